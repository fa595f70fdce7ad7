"""The study's vocabulary, declared once: split names, labels, latent directions, how a temperature is
spelled, and the default seed. Everything else imports these rather than repeating the strings."""

from __future__ import annotations

# Phase 0.1 splits: latents are discovered on ``sae``, thresholds and steering coefficients are chosen on
# ``hyperparams``, and ``validation`` is touched once for the reported numbers.
SAE_SPLIT = "sae"
HYPERPARAMS_SPLIT = "hyperparams"
VALIDATION_SPLIT = "validation"
SPLIT_NAMES: tuple[str, ...] = (SAE_SPLIT, HYPERPARAMS_SPLIT, VALIDATION_SPLIT)

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

# Phase 3 steering sweeps (relative mode: multiples of the mean residual norm at the layer; nonzero, as every
# problem group also gets an unsteered baseline). Half the norm already breaks every correct solution of the
# embedded model, so the sweep starts small (SMALL_STEERING_COEFFICIENTS, the embedded profile's); the study
# keeps the original grid beside them (its negative values are exploratory: the confirmatory coefficient is
# positive). The short sweep is for small runs (rehearsal, tests).
SMALL_STEERING_COEFFICIENTS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5)
# The embedded profile's: the middle of those. On the embedded model 0.02 changed no label and at 0.5 the controls
# break every correct solution (docs/runs.md), and each coefficient costs ~30 s of the run's time budget.
EMBEDDED_STEERING_COEFFICIENTS: tuple[float, ...] = (0.05, 0.1, 0.2)
STUDY_STEERING_COEFFICIENTS: tuple[float, ...] = tuple(
    sorted({-1.0, -0.75, -0.5, -0.25, 0.25, 0.75, 1.0, *SMALL_STEERING_COEFFICIENTS})
)
SHORT_STEERING_COEFFICIENTS: tuple[float, ...] = (0.1, 0.5)


def temperature_tag(temperature: float) -> str:
    """``0.3 -> "0.3"``: one spelling of a temperature in every path and partition key."""
    return f"{float(temperature):.1f}"


def label_of(passed: bool) -> str:
    return CORRECT if passed else INCORRECT
