"""Phase 3 classification: thresholds, AUROC/F1 with intervals, and the report."""
