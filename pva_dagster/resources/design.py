"""The study's design: every science knob that differs between the embedded and the gemma profile.

Generation settings live here rather than on the model resource because they decide what the model writes
(and so the labels); Phase 1.0, Phase 1.2 and the steering reruns must share them.
"""


from dataclasses import fields

import dagster as dg
from pydantic import Field, model_validator

from pva_dagster.study.analysis.separation import MAX_GENERAL_FREQ
from pva_dagster.study.domain import DEFAULT_SEED
from pva_dagster.study.generation.labelled_generation import PromptFormat
from pva_dagster.study.generation.prompts import DEFAULT_TEMPLATE
from pva_dagster.study.generation.residual import RESID_POST, HookPoint
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.problems.extended_tests import MAX_TESTS
from pva_dagster.study.problems.labels import EXTENDED_LABEL, LabelRule
from pva_dagster.study.steering.results import PRESERVATION_MARGIN
from pva_dagster.study.steering.vectors import check_steering_coefficients

PHASE1_2_TEMPERATURES = [0.3, 0.6, 0.9, 1.2]
_GENERATION = GenerationSettings()  # the one place generation defaults are declared



# The steering sweep (relative mode: multiples of the mean residual norm at the layer; nonzero, as every problem
# group also gets an unsteered baseline). Half the norm already breaks every correct solution of a small model,
# so the grid starts small; the original study's grid sits beside it (its negative values are exploratory: the
# confirmatory coefficient is positive).
SMALL_STEERING_COEFFICIENTS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5)
STEERING_COEFFICIENTS: tuple[float, ...] = tuple(
    sorted({-1.0, -0.75, -0.5, -0.25, 0.25, 0.75, 1.0, *SMALL_STEERING_COEFFICIENTS})
)

class StudyDesign(dg.ConfigurableResource):
    seed: int = Field(default=DEFAULT_SEED, description="Seed of every random step (splits, sampling, controls).")
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

    # How the model writes a solution (Phase 1 and the steering reruns alike).
    max_new_tokens: int = Field(
        default=_GENERATION.max_new_tokens, description="Tokens generated per solution at most."
    )
    max_prompt_tokens: int = Field(
        default=_GENERATION.max_prompt_tokens, description="Prompts are cut to their last N tokens."
    )
    stop_at_function_end: bool = Field(
        default=_GENERATION.stop_at_function_end, description="Stop once the function is complete."
    )
    prompt_template: str = Field(default=DEFAULT_TEMPLATE, description="Zero-shot prompt; {text} and {tests}.")
    use_chat_template: bool = Field(default=False, description="Wrap the prompt in the tokenizer's chat template.")

    # What decides a solution's label (both are recorded): MBPP's three base asserts, shown in the prompt, or
    # the base asserts and the extended tests made from the reference solution (Phase 0, never shown).
    label: LabelRule = Field(
        default=EXTENDED_LABEL, description="'extended': base + extended tests decide pass@1; 'base': the base asserts."
    )
    extended_tests_per_problem: int = Field(
        default=MAX_TESTS, ge=0, description="Extended tests made per problem at most (0: none, base label only)."
    )

    # Phase 2's general-text filter: latents firing this often on ordinary English are dropped from the ranking.
    general_text_cutoff: float = Field(
        default=MAX_GENERAL_FREQ, gt=0, le=1,
        description="Drop latents active on this fraction of general-text positions or more (the study's 2 %).",
    )
    general_text_density_multiple: float | None = Field(
        default=None, gt=0,
        description="Instead, drop latents active this many times as often as the SAE's mean latent (per layer).",
    )

    steering_coefficients: list[float] = Field(
        default=list(STEERING_COEFFICIENTS),
        description="Phase 3 steering sweep over the non-validation problems (relative mode: multiples of the mean "
        "residual norm at the layer); nonzero, as every problem group also gets an unsteered baseline.",
    )
    steering_controls: int = Field(
        default=3, ge=1,
        description="Control latents per steered latent (same layer, |s_correct| near 0, matched on firing "
        "frequency, cosine with the mean residual and decoder norm).",
    )
    steering_max_tasks: int | None = Field(
        default=None, ge=1,
        description="Problems steered per label on the validation split at most (seeded sample; None = all).",
    )
    steering_sweep_max_tasks: int | None = Field(
        default=None, ge=1,
        description="Problems per label in the coefficient sweep at most, a seeded sample of the sae and "
        "hyperparams splits together (None = all of them); its generation is Phase 3's largest cost.",
    )
    steering_random_directions: int = Field(
        default=19, ge=0,
        description="Random directions of the target's norm steered on validation for the exploratory rank test "
        "(19 or more: its smallest p-value is 1/(n+1)); 0 skips it.",
    )
    steering_preservation_margin: float = Field(
        default=PRESERVATION_MARGIN, gt=0, lt=1,
        description="Preservation's non-inferiority margin: how much more of the correct problems the target may "
        "break than a control does (upper 95 % bound of the paired difference).",
    )
    steering_hook: HookPoint = Field(
        default=RESID_POST,
        description="Where Phase 3 adds the vector in the steered layer L, by TransformerLens's hook names: "
        "blocks.L.hook_resid_pre (the block's input), blocks.L.hook_resid_mid (after attention, before the MLP) "
        "or blocks.L.hook_resid_post (the block's output: the default, where the SAEs read and Phase 1 stores).",
    )

    def generation_settings(self, sort_by_length: bool = False) -> GenerationSettings:
        """How the model writes under this design (greedy; a run sets its temperature, samples and batch size)."""
        return GenerationSettings(**{name: getattr(self, name) for name in _DESIGNED}, sort_by_length=sort_by_length)

    def prompt_format(self) -> PromptFormat:
        return PromptFormat(self.prompt_template, self.use_chat_template)

    def generation_fields(self) -> dict[str, object]:
        """The generation knobs, for the metadata stored beside each Phase 1 dataset."""
        written = {name: getattr(self, name) for name in _DESIGNED if name != "seed"}
        return {**written, "prompt_template": self.prompt_template, "use_chat_template": self.use_chat_template}

    @model_validator(mode="after")
    def _check(self) -> "StudyDesign":
        if self.task_range_size < 1:
            raise ValueError(f"task_range_size must be >= 1, got {self.task_range_size}")
        if self.samples_per_temperature < 1:
            raise ValueError(f"samples_per_temperature must be >= 1, got {self.samples_per_temperature}")
        self.generation_settings()  # raises, naming the knob, where a token budget is not a positive integer
        bad = [t for t in self.temperatures if t <= 0]
        if bad:
            raise ValueError(f"Phase 1.2 temperatures must be > 0 (Phase 1.0 is the greedy run), got {bad}")
        check_steering_coefficients(self.steering_coefficients)
        if self.layers is not None:
            missing = sorted(set(self.sae_layers) - set(self.layers))
            if missing:
                raise ValueError(f"sae_layers {missing} are not among the stored layers {self.layers}")
        return self


# GenerationSettings' fields that the design sets (token budgets, stop rule, seed): found by name, so a knob is
# declared once there and once here as a Dagster setting, never listed a third time.
_DESIGNED = tuple(f.name for f in fields(GenerationSettings) if f.name in StudyDesign.model_fields)
