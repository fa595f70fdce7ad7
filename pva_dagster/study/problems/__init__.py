"""Phase 0 and 0.1: the problems (MBPP, embedded, hub), their difficulty, splits and task ranges."""
