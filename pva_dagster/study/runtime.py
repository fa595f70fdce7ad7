"""Process-wide settings the study's own commands apply before touching any hub-aware library."""

from __future__ import annotations

import os

# The workplace has no model or data hub; lift these by exporting HF_HUB_OFFLINE=0 / WANDB_MODE=online.
OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
