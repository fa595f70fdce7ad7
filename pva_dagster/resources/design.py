"""The study's design knobs that differ between the embedded and the study profile."""


import dagster as dg
from pydantic import Field, model_validator

PHASE1_2_TEMPERATURES = [0.3, 0.6, 0.9, 1.2]


class StudyDesign(dg.ConfigurableResource):
    seed: int = Field(default=42, description="Seed of every random step (splits, sampling, controls).")
    max_task_id: int = Field(default=974, description="Largest task ID; fixes the task-range partitions.")
    task_range_size: int = Field(default=50, description="Task IDs per partition (one unit of a backfill).")
    layers: list[int] | None = Field(
        default=None, description="Layers whose residual stream Phase 1 stores (None = every layer)."
    )
    sae_layers: list[int] = Field(
        default=[6, 12, 18], description="Layers analysed with an SAE in Phase 2 (each needs an SAE)."
    )
    temperatures: list[float] = Field(
        default=PHASE1_2_TEMPERATURES, description="Phase 1.2 sampling temperatures (validation split)."
    )
    samples_per_temperature: int = Field(default=5, description="Phase 1.2 samples per task and temperature.")

    steering_coefficients: list[float] = Field(
        default=[-1.0, -0.75, -0.5, -0.25, 0.25, 0.5, 0.75, 1.0],
        description="Phase 3 steering sweep on the hyperparams split (relative mode: multiples of the mean "
        "residual norm at the layer); nonzero, as every problem group also gets an unsteered baseline.",
    )
    steering_controls: int = Field(
        default=3, description="Control latents per steered latent (same layer, |s_correct| near 0)."
    )
    steering_max_tasks: int | None = Field(
        default=None, description="Problems steered per label and split at most (seeded sample; None = all)."
    )

    @model_validator(mode="after")
    def _check(self) -> "StudyDesign":
        if self.task_range_size < 1:
            raise ValueError(f"task_range_size must be >= 1, got {self.task_range_size}")
        if self.samples_per_temperature < 1:
            raise ValueError(f"samples_per_temperature must be >= 1, got {self.samples_per_temperature}")
        bad = [t for t in self.temperatures if t <= 0]
        if bad:
            raise ValueError(f"Phase 1.2 temperatures must be > 0 (Phase 1.0 is the greedy run), got {bad}")
        if not self.steering_coefficients or 0.0 in self.steering_coefficients:
            raise ValueError(
                "steering_coefficients must be nonzero (0 is the baseline every run has), "
                f"got {self.steering_coefficients}"
            )
        if self.layers is not None:
            missing = sorted(set(self.sae_layers) - set(self.layers))
            if missing:
                raise ValueError(f"sae_layers {missing} are not among the stored layers {self.layers}")
        return self
