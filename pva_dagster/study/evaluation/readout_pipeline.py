"""The readouts end to end, from the tasks, their residuals and SAE latents and Phase 2's discovery: every readout
beside the baselines and probes, beyond difficulty, the confirmatory labels, and the exploratory comparisons
(discovery latents on validation, the other label). The ``phase3_readouts`` asset loads the inputs and calls
:func:`readout_tables`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from pva_dagster.study import outputs
from pva_dagster.study.domain import VALIDATION_SPLIT
from pva_dagster.study.evaluation.beyond_difficulty import beyond_difficulty_table
from pva_dagster.study.evaluation.confirmatory import family_labels
from pva_dagster.study.evaluation.label_comparison import label_flips, rank1_auroc_by_label, top_latents_by_label
from pva_dagster.study.evaluation.readout_inputs import discovery_latents_on, rank1_latents
from pva_dagster.study.evaluation.readout_metrics import readout_table
from pva_dagster.study.evaluation.readouts import readout_scores_and_curves
from pva_dagster.study.evaluation.replicates import (
    Discovery,
    ReplicateDesign,
    null_medians,
    replicate_summary,
    replicate_table,
    selection_frequency,
)


@dataclass(frozen=True)
class ReadoutSettings:
    seed: int  # every seeded step: fits, bootstrap, permutations
    resamples: int  # bootstrap resamples per interval
    permutations: int  # label permutations per AUROC p-value
    workers: int = 1  # processes for the replicates and their null draws (the tables are the same for any number)


def readout_tables(
    tasks: pd.DataFrame, residuals: Mapping[int, np.ndarray], latents: Mapping[int, np.ndarray], top: pd.DataFrame,
    general_freq: Mapping[int, np.ndarray], settings: ReadoutSettings, log: Callable[[str], None] = print,
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Every table of :data:`outputs.READOUT_TABLES` and, per direction, the layer of its rank-1 latent (the
    confirmatory one).

    ``tasks``: :func:`readout_tasks`; ``residuals[layer]`` / ``latents[layer]``: ``float[tasks, d]`` in ``tasks``'
    order; ``top``: Phase 2's top latents on the discovery split (its ``attrs`` hold the cut-offs and sizes it
    ranked with); ``general_freq[layer]``: each latent's general-text frequency."""
    per_layer, rank1 = rank1_latents(top)
    scores, curves = readout_scores_and_curves(tasks, residuals, latents, settings.seed, chosen_latents=per_layer)
    table = readout_table(scores, settings.seed, settings.resamples, settings.permutations)
    beyond = beyond_difficulty_table(scores, tasks, settings.seed, settings.resamples)
    table, beyond = (frame.assign(family=family_labels(frame, rank1)) for frame in (table, beyond))
    # Exploratory: the same discovery and AUROC under the other label.
    cutoffs = {int(k): float(v) for k, v in top.attrs["general_text_cutoffs"].items()}
    config = top.attrs["config"]
    by_label = top_latents_by_label(tasks, latents, general_freq, cutoffs, config["top_n"], config["keep"])
    discovery = Discovery(latents, general_freq, cutoffs)
    design = ReplicateDesign(settings.seed, top_n=config["top_n"], keep=config["keep"])
    # Thousands of small fits: BLAS threads cost more in start-up than they save (measured 6x slower on 2 cores);
    # the replicates and null draws go to one process per core instead.
    with threadpool_limits(limits=1):
        started = time.perf_counter()
        log(f"{design.resplits} re-drawn splits over {settings.workers} process(es): selection, baselines, probes")
        replicates = replicate_table(tasks, residuals, discovery, design, settings.workers)
        log(f"replicates done in {time.perf_counter() - started:.0f} s; {design.null_draws} null draws next")
        null = null_medians(tasks, discovery, design, settings.workers)
        log(f"null draws done; the replicate analysis took {time.perf_counter() - started:.0f} s")
    tables = {
        outputs.REPLICATES: replicates, outputs.SELECTION_FREQUENCY: selection_frequency(replicates),
        outputs.REPLICATE_SUMMARY: replicate_summary(replicates, null, design),
        outputs.READOUT_TABLE: table, outputs.BEYOND_DIFFICULTY: beyond, outputs.READOUT_SCORES: scores,
        outputs.DISCOVERY_ON_VALIDATION: discovery_latents_on(top, dict(latents), tasks, VALIDATION_SPLIT),
        outputs.LABEL_FLIPS: label_flips(tasks), outputs.TOP_LATENTS_BY_LABEL: by_label,
        outputs.AUROC_BY_LABEL: rank1_auroc_by_label(tasks, latents, by_label, settings.seed, settings.resamples),
        outputs.READOUT_REGULARISATION: curves,
    }
    return tables, rank1
