"""Dagster assets, one module per stage of the study, named by what it holds (the asset keys keep their phase
numbers: ``phase2*`` selects the analysis); each asset is a thin wrapper over ``pva_dagster.study``."""
