"""How well each SAE represents the study's own residuals: one row per SAE layer, over every Phase 1.0 task.

Phase 2 reads the residual at the last prompt token, the same token of the same prompt template for every task,
so what differs between tasks is a small part of each residual. An SAE trained on other text can reconstruct
the residual's large shared part well and still lose everything that differs between tasks; its latents then
cannot separate correct from incorrect code whatever the model knows. This table says which case holds:

* ``fvu`` = Σ‖x−x̂‖² / Σ‖x‖²: the share of the residuals' energy the SAE loses (uncentred).
* ``fvu_between_tasks`` = Σ‖x−x̂‖² / Σ‖x−x̄‖²: the error against the variation between tasks (x̄: the mean
  residual over the tasks). At 1 or more the error is as large as everything that differs between tasks.
* ``between_task_share`` = Σ‖x−x̄‖² / Σ‖x‖²: how much of the residual differs between tasks at all.
* ``mean_l0``: active latents per task; ``latents_fired``: latents active on at least one task;
  ``dead_on_study_prompts`` = ``d_sae`` − ``latents_fired``.

* ``loss_clean``, ``loss_spliced``, ``loss_zero_ablated``, ``loss_recovered``: the model's next-token loss with the
  SAE's reconstruction spliced in at its layer, on validation prompts at every position
  (:mod:`~pva_dagster.study.analysis.spliced_loss`; measured by ``sae_weights``, where the model is loaded, and
  joined here by layer: the same values on both rows of a layer).

A ratio whose denominator is zero (one task, or identical residuals) is NaN and the warnings say why.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.activation_index import load_residuals
from pva_dagster.study.analysis.sae import encode_and_reconstruct
from pva_dagster.study.outputs import SAE_QUALITY_TABLE
from pva_dagster.study.plots import markdown_table

SAE_QUALITY_COLUMNS = (
    "layer", "prompts", "tasks", "d_sae", "fvu", "fvu_between_tasks", "between_task_share", "mean_l0", "latents_fired",
    "dead_on_study_prompts",
)
LOSS_COLUMNS = ("loss_clean", "loss_spliced", "loss_zero_ablated", "loss_recovered")
# A layer is flagged when its SAE's error reaches half the between-task variation. At 1 the error could hold all
# of it; at 0.5 a latent difference between tasks is still no larger than the error beside it, so a latent that
# does not separate correct from incorrect code says little about the model. Below 0.5 the SAE keeps most of what
# differs between tasks (error is not orthogonal to the kept part, so this is a reading aid, not a test).
BETWEEN_TASK_FVU_WARNING = 0.5
ENCODE_BATCH = 256


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def layer_quality(residuals: np.ndarray, sae: Any, layer: int, batch_size: int = ENCODE_BATCH) -> dict[str, Any]:
    """The quality row of one layer from its residuals ``float[tasks, d_model]`` (one row per task) and SAE.

    Raises ValueError naming the layer for no tasks, a non-2-D array or non-finite residuals (or
    reconstructions)."""
    residuals = np.asarray(residuals)
    if residuals.ndim != 2 or len(residuals) == 0:
        raise ValueError(f"layer {layer}: residuals must be [tasks, d_model] with at least one task, got "
                         f"shape {residuals.shape}")
    bad = ~np.isfinite(residuals).all(axis=1)
    if bad.any():
        raise ValueError(f"layer {layer}: {int(bad.sum())} of {len(residuals)} tasks' residuals hold non-finite "
                         f"values (rows {np.flatnonzero(bad)[:10].tolist()})")
    latents, recons = encode_and_reconstruct(sae, residuals, batch_size)
    if not (np.isfinite(latents).all() and np.isfinite(recons).all()):
        raise ValueError(f"layer {layer}: the SAE's latents or reconstructions of finite residuals are non-finite")
    x = residuals.astype(np.float64)
    error = float(np.square(x - recons).sum())
    energy = float(np.square(x).sum())
    between = float(np.square(x - x.mean(axis=0)).sum())
    active = latents > 0
    fired = int(active.any(axis=0).sum())
    d_sae = int(latents.shape[1])
    return {
        "layer": int(layer), "tasks": len(x), "d_sae": d_sae, "fvu": _ratio(error, energy),
        "fvu_between_tasks": _ratio(error, between), "between_task_share": _ratio(between, energy),
        "mean_l0": float(active.sum(axis=1).mean()), "latents_fired": fired, "dead_on_study_prompts": d_sae - fired,
    }


# Which prompts a row measures: every Phase 1.0 task, and the validation tasks alone. The embedded SAEs train on
# the readout residuals of the sae and hyperparams problems, so only the validation row is held out for them.
EVERY_TASK, HELD_OUT = "every task", "validation (held out)"


def sae_quality_table(
    index: pd.DataFrame, layers: Sequence[int], sae_for_layer: Callable[[int], Any],
    log: Callable[[str], None] = print, held_out: Collection[int] = (),
) -> pd.DataFrame:
    """:func:`layer_quality` rows per layer from Phase 1.0's activation index (one row per task and layer, as
    :func:`~pva_dagster.study.analysis.activation_index.activation_index` gives it): over every task and, where
    ``held_out`` names tasks, over those alone (column ``prompts``)."""
    rows = []
    for layer in layers:
        at_layer = index[index.layer == layer]
        if at_layer.empty:
            raise ValueError(f"layer {layer}: no Phase 1.0 activations to measure the SAE on")
        if at_layer.task_id.duplicated().any():
            raise ValueError(f"layer {layer}: several Phase 1.0 rows share a task; the table wants one per task")
        groups = [(EVERY_TASK, at_layer), (HELD_OUT, at_layer[at_layer.task_id.isin(list(held_out))])]
        for prompts, rows_of in groups:
            if prompts == HELD_OUT and rows_of.empty:
                continue
            row = {"prompts": prompts, **layer_quality(load_residuals(rows_of.file.tolist()), sae_for_layer(layer),
                                                       layer)}  # fmt: skip
            rows.append(row)
            log(f"SAE quality, layer {layer}, {prompts}: {row['tasks']} tasks, fvu {row['fvu']:.3f}, between-task "
                f"fvu {row['fvu_between_tasks']:.3f}, {row['latents_fired']} of {row['d_sae']} latents fired")
    return pd.DataFrame(rows, columns=list(SAE_QUALITY_COLUMNS))


def read_spliced_loss(path: Path) -> pd.DataFrame:
    """``sae_weights``' spliced-loss table; raises saying what to re-run when it is absent."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (sae_weights made by an older version): re-materialize sae_weights")
    return pd.read_parquet(path)


def with_spliced_loss(table: pd.DataFrame, loss: pd.DataFrame) -> pd.DataFrame:
    """The quality table with :data:`LOSS_COLUMNS` joined by layer; raises naming a layer the loss lacks."""
    missing = sorted(set(table.layer) - set(loss.layer)) if "layer" in loss.columns else sorted(set(table.layer))
    if missing:
        raise ValueError(f"no spliced next-token loss for layers {missing}: re-materialize sae_weights")
    return table.merge(loss[["layer", *LOSS_COLUMNS]], on="layer", how="left", validate="many_to_one")


def quality_warnings(table: pd.DataFrame, limit: float = BETWEEN_TASK_FVU_WARNING) -> list[str]:
    """A plain-language sentence per layer whose SAE loses at least ``limit`` of the between-task variation, or
    where that ratio cannot be computed; none for a layer below it."""
    sentences = []
    held_out = table[table.prompts == HELD_OUT] if "prompts" in table.columns else table
    for row in (held_out if len(held_out) else table).itertuples():
        fired = f"{row.latents_fired} of its {row.d_sae} latents fire on any of the {row.tasks} study prompts"
        if np.isnan(row.fvu_between_tasks):
            sentences.append(
                f"Layer {row.layer}: the residuals do not vary between the {row.tasks} tasks, so whether the SAE "
                f"represents what differs between them is not estimable; {fired}."
            )
        elif row.fvu_between_tasks >= 1:
            sentences.append(
                f"Layer {row.layer}: the SAE's reconstruction error is {row.fvu_between_tasks:.1f} times the "
                f"variation between tasks ({row.between_task_share:.1%} of the residual's energy), so its latents "
                f"need not represent any of what differs between tasks; {fired}. A latent result at this layer "
                "says little about the model."
            )
        elif row.fvu_between_tasks >= limit:
            sentences.append(
                f"Layer {row.layer}: the SAE's reconstruction error is {row.fvu_between_tasks:.0%} of the variation "
                f"between tasks (warning at {limit:.0%}), so its latents may miss much of what differs between "
                f"tasks; {fired}."
            )
    return sentences


def quality_markdown(table: pd.DataFrame) -> str:
    """The table as a pipe table, counts as integers (a frame's mixed numbers would all print as floats)."""
    counts = table.select_dtypes("integer").columns
    return markdown_table(table.astype({column: object for column in counts}))


def quality_table_of(phase2_tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The SAE quality table among Phase 2's tables; raises saying what to re-run when it is absent."""
    if SAE_QUALITY_TABLE not in phase2_tables:
        raise ValueError(
            f"Phase 2's tables hold no {SAE_QUALITY_TABLE!r} (made by an older version): re-materialize phase2"
        )
    return phase2_tables[SAE_QUALITY_TABLE]


def separation_tables(phase2_tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Phase 2's separation scores by split, without the tables it holds over every task."""
    return {name: table for name, table in phase2_tables.items() if name != SAE_QUALITY_TABLE}
