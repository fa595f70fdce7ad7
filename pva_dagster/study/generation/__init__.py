"""Phase 1: loading the model, prompting, batched generation with residual capture, labelling."""
