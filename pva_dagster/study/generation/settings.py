"""How a solution is generated: token budgets, batch size, temperature and samples, the stop rule.

One value of these settings is shared by Phase 1.0, Phase 1.2 and the steering reruns (the study design fills
it), so what the model writes is decided in one place."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Rows per batch when neither the configuration nor a loaded model chooses (see auto_batch_size).
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 800
    max_prompt_tokens: int = 2048  # longer prompts keep their last tokens (the asserts and "# Solution:")
    batch_size: int = DEFAULT_BATCH_SIZE  # rows per batch: prompts when greedy, prompts x samples when sampling
    temperature: float = 0.0  # 0 = greedy
    num_samples: int = 1  # samples per prompt (sampling only)
    seed: int = 0  # recorded with the outputs; per-prompt sampling seeds come from the caller
    stop_at_function_end: bool = True
    # Batch prompts of similar token length together (longest first) so rows carry little padding; results
    # keep their prompt_index, and the batches depend only on the prompts, so a resumed run re-forms them.
    sort_by_length: bool = False

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_prompt_tokens", "batch_size", "num_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GenerationSettings.{name} must be an integer >= 1, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"GenerationSettings.temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.num_samples != 1:
            raise ValueError(
                f"GenerationSettings.num_samples={self.num_samples} needs temperature > 0 "
                "(greedy gives one sample)"
            )

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
