"""The science of the study: plain, typed modules that know nothing of Dagster.

Each module is one stage (problems, difficulty, splits, sandbox, prompts, model loading, generation, SAE,
separation, validation statistics, steering); the Dagster assets in ``pva_dagster.assets`` are thin wrappers.
"""
