"""The study's vocabulary, declared once: split names, labels, latent directions, how a temperature is
spelled, and the default seed. Everything else imports these rather than repeating the strings."""

from __future__ import annotations

# Phase 0.1 splits: latents are discovered on ``sae``; regularisation, thresholds and steering coefficients are
# chosen by cross-validation over ``sae`` and ``hyperparams`` together (NON_VALIDATION); ``validation`` is
# touched once for the reported numbers.
SAE_SPLIT = "sae"
HYPERPARAMS_SPLIT = "hyperparams"
VALIDATION_SPLIT = "validation"
SPLIT_NAMES: tuple[str, ...] = (SAE_SPLIT, HYPERPARAMS_SPLIT, VALIDATION_SPLIT)
NON_VALIDATION = "non-validation"
NON_VALIDATION_SPLITS: tuple[str, ...] = (SAE_SPLIT, HYPERPARAMS_SPLIT)

# A solution's label (pass@1 in the sandbox) and, with the same two words, a latent's direction: the label of
# the solutions it fires more on.
CORRECT = "correct"
INCORRECT = "incorrect"
LABELS: tuple[str, ...] = (CORRECT, INCORRECT)
DIRECTIONS: tuple[str, ...] = LABELS

# Phase 1.0 decodes greedily; Phase 1.2 samples at the study design's temperatures.
GREEDY_TEMPERATURE = 0.0

# Wall-clock columns of Phase 1 and steering records: they time the machine, not the result, so data versions
# and the comparison of two runs leave them out.
TIMING_COLUMNS: tuple[str, ...] = ("generation_seconds", "sandbox_seconds")

# Seed of every random step unless a profile or a caller says otherwise.
DEFAULT_SEED = 42



def temperature_tag(temperature: float) -> str:
    """``0.3 -> "0.3"``: one spelling of a temperature in every path and partition key."""
    return f"{float(temperature):.1f}"


def label_of(passed: bool) -> str:
    return CORRECT if passed else INCORRECT
