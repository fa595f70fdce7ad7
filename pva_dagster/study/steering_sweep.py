"""Phase 3 causal validation: steer generation along a latent's decoder direction and count what changes.

A unit is one (coefficient, direction, latent); its records go to their own resumable file, so a sweep can be
spread over devices or resumed after a crash. The correct-preferring latent is applied to problems Phase 1.0
got wrong (does it correct them?), the incorrect-preferring one to problems it got right (does it break
them?); random latents of the same layer at the same coefficient are the control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.generation import GenerationSettings
from pva_dagster.study.sandbox import SandboxLimits
from pva_dagster.study.solutions import Task, run_solutions
from pva_dagster.study.steering import (
    binomial_vs_control,
    code_similarity,
    steered,
    steering_vector,
    transition_rates,
)

# Which Phase 1.0 label a direction's latent is applied to, and which rate measures its effect.
TARGET_LABEL = {"correct": False, "incorrect": True}
EFFECT_RATE = {"correct": "correction_rate", "incorrect": "corruption_rate"}


@dataclass(frozen=True)
class SteeringUnit:
    coefficient: float  # as configured (relative: a multiple of the mean residual norm)
    scale: float  # the vector's norm actually added
    direction: str  # "correct" / "incorrect": the latent's preference
    kind: str  # "target" or "control"
    layer: int
    latent: int

    @property
    def name(self) -> str:
        return f"coef_{self.coefficient:+.3f}_{self.direction}_{self.kind}_L{self.layer}_{self.latent}"


def run_unit(
    unit: SteeringUnit,
    tasks: Sequence[Task],
    decoder_direction: Any,  # torch.Tensor[d_model], the SAE's W_dec row
    *,
    model: Any,
    tokenizer: Any,
    settings: GenerationSettings,
    stop_token_ids: Sequence[int],
    out_dir: Path,
    limits: SandboxLimits,
    seed: int,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Generate and label ``tasks`` with the unit's vector added at its layer (resumable per unit)."""
    vector = steering_vector(decoder_direction, unit.scale)
    with steered(model, unit.layer, vector):
        return run_solutions(
            tasks, model=model, tokenizer=tokenizer, settings=settings, stop_token_ids=stop_token_ids,
            layers=None, dataset_path=out_dir / f"{unit.name}.parquet", activation_path=None, limits=limits,
            seed=seed, extra_columns={"unit": unit.name}, log=log,
        )


def unit_effect(unit: SteeringUnit, steered_records: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, Any]:
    """Transition rates and code similarity of one unit against the unsteered Phase 1.0 records."""
    merged = baseline.merge(steered_records, on="task_id", suffixes=("_before", "_after"), validate="one_to_one")
    rates = transition_rates(merged.passed_before.to_numpy(bool), merged.passed_after.to_numpy(bool))
    similarity = [code_similarity(a, b) for a, b in zip(merged.generated_code_before, merged.generated_code_after)]
    return {
        "coefficient": unit.coefficient, "scale": unit.scale, "direction": unit.direction, "kind": unit.kind,
        "layer": unit.layer, "latent": unit.latent, **rates, "effect_rate": rates[EFFECT_RATE[unit.direction]],
        "mean_similarity": float(np.mean(similarity)) if similarity else float("nan"),
        "identical_completions": int((merged.completion_before == merged.completion_after).sum()),
        "n_tasks": len(merged),
    }


def compare_with_control(effects: pd.DataFrame) -> pd.DataFrame:
    """Per (coefficient, direction): the target's effect count against the pooled control rate (binomial)."""
    rows = []
    for (coefficient, direction), group in effects.groupby(["coefficient", "direction"]):
        target = group[group.kind == "target"].iloc[0]
        control = group[group.kind == "control"]
        successes_column = "n_corrected" if direction == "correct" else "n_corrupted"
        trials_column = "n_incorrect" if direction == "correct" else "n_correct"
        control_trials = int(control[trials_column].sum())
        control_rate = control[successes_column].sum() / control_trials if control_trials else float("nan")
        trials = int(target[trials_column])
        test = (
            binomial_vs_control(int(target[successes_column]), trials, float(control_rate))
            if trials and np.isfinite(control_rate) else {"p_value": float("nan"), "ci_low": float("nan"),
                                                          "ci_high": float("nan"), "rate": float("nan")}
        )
        rows.append({"coefficient": coefficient, "direction": direction, "layer": int(target.layer),
                     "latent": int(target.latent), "target_rate": target.effect_rate,
                     "control_rate": control_rate, "successes": int(target[successes_column]), "trials": trials,
                     **{k: v for k, v in test.items() if k != "rate"}})
    return pd.DataFrame(rows)


def sweep_series(effects: pd.DataFrame) -> dict[str, list[float]]:
    """Effect rate per coefficient: one line per direction for the target, one for the pooled controls."""
    series = {}
    for (direction, kind), group in effects.groupby(["direction", "kind"]):
        by_coefficient = group.groupby("coefficient").effect_rate.mean().sort_index()
        series[f"{direction} {kind}"] = by_coefficient.tolist()
    return series
