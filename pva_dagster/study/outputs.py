"""The study's outputs by name, declared once: each asset's key, and the tables a table-set asset holds.

The asset functions carry these keys as their names (``tests/test_architecture.py`` checks that every key here
is an asset); the data layout, the IO manager, the jobs and the report address outputs through these constants.
"""

from __future__ import annotations

# Phase 0 / 0.1
MBPP_PROBLEMS = "mbpp_problems"
DIFFICULTY_MAPPING = "difficulty_mapping"
PROBLEM_SPLITS = "problem_splits"
EXTENDED_TESTS = "extended_tests"
# Phase 1 (partitioned: one file per task range, and per temperature for 1.2)
PHASE1_0_SOLUTIONS = "phase1_0_solutions"
PHASE1_2_SOLUTIONS = "phase1_2_solutions"
# Phase 2
GENERAL_TEXT_FREQUENCY = "general_text_frequency"
SEPARATION_SCORES = "phase2"  # its key is the phase's name: `--select 'phase2*'` is how users run the analysis
TOP_LATENTS = "top_latents"
GENERAL_TEXT_CUTOFFS = "general_text_cutoffs"
# Phase 3
CLASSIFICATION = "phase3_classification"
READOUTS = "phase3_readouts"
SAE_SEED_REPLICATES = "sae_seed_replicates"  # the selection redone on the SAEs' seed variants
STEERING_COEFFICIENTS = "phase3_steering_coefficients"
STEERING = "phase3_steering"
REPORT = "phase3_report"

# The tables of each table-set asset (its value is a dict of these names to DataFrames).
CLASSIFICATION_OVERALL, CLASSIFICATION_BY_GROUP = "classification", "classification_by_group"
CLASSIFICATION_TABLES = (CLASSIFICATION_OVERALL, CLASSIFICATION_BY_GROUP)
CHOSEN_COEFFICIENTS, SWEEP_TESTS, SWEEP_CONTROLS, SWEEP_UNITS, SWEEP_NOISE, SWEEP_FOLDS = (
    "phase3_steering_coefficients", "steering_sweep_tests", "steering_sweep_controls", "steering_sweep_units",
    "steering_sweep_noise", "steering_sweep_folds",
)
STEERING_COEFFICIENT_TABLES = (
    CHOSEN_COEFFICIENTS, SWEEP_TESTS, SWEEP_CONTROLS, SWEEP_UNITS, SWEEP_NOISE, SWEEP_FOLDS
)
STEERING_TESTS, STEERING_CONTROLS, STEERING_EFFECTS, STEERING_NOISE = (
    "steering_tests", "steering_controls", "steering_effects", "steering_noise",
)
STEERING_TABLES = (STEERING_TESTS, STEERING_CONTROLS, STEERING_EFFECTS, STEERING_NOISE)
READOUT_TABLE, BEYOND_DIFFICULTY, READOUT_SCORES = "readouts", "beyond_difficulty", "readout_scores"
DISCOVERY_ON_VALIDATION = "discovery_latents_on_validation"
LABEL_FLIPS, TOP_LATENTS_BY_LABEL, AUROC_BY_LABEL = "label_flips", "top_latents_by_label", "auroc_by_label"
# The selection redone over re-drawn splits (evaluation/replicates.py)
REPLICATES, REPLICATE_SUMMARY, SELECTION_FREQUENCY = "replicates", "replicate_summary", "selection_frequency"
READOUT_REGULARISATION = "readout_regularisation"  # each fitted readout's cross-validated AUROC per C
READOUT_TABLES = (
    READOUT_TABLE, BEYOND_DIFFICULTY, READOUT_SCORES, DISCOVERY_ON_VALIDATION, LABEL_FLIPS, TOP_LATENTS_BY_LABEL,
    AUROC_BY_LABEL, READOUT_REGULARISATION, REPLICATES, REPLICATE_SUMMARY, SELECTION_FREQUENCY,
)
SAE_SEED_SELECTIONS, SAE_SEED_SUMMARY, SAE_SEED_QUALITY = "sae_seed_selections", "sae_seed_summary", "sae_seed_quality"
SAE_SEED_TABLES = (SAE_SEED_SELECTIONS, SAE_SEED_SUMMARY, SAE_SEED_QUALITY)
# Phase 2's tables per split, under phase2/<split>/
SCORES_TABLE, TOP_TABLE = "separation_scores", "top_latents"
# Phase 2's table over every Phase 1.0 task (beside its per-split scores in its value), under phase2/
SAE_QUALITY_TABLE = "sae_quality"
PHASE2_SHARED_TABLES = (SAE_QUALITY_TABLE,)
