"""The study's findings as one markdown page, from the Phase 2 and Phase 3 tables.

The page opens with how well each SAE represents the study's own residuals (what every latent result rests on);
then confirmatory numbers (validation split, touched once), each rate with its 95 % interval and each claim with
its named test; exploratory tables (the coefficient sweep, per-unit details) are labelled as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study import outputs
from pva_dagster.study.analysis.sae_quality import BETWEEN_TASK_FVU_WARNING, quality_markdown, quality_warnings
from pva_dagster.study.domain import DIRECTIONS, SAE_SPLIT
from pva_dagster.study.evaluation.beyond_difficulty import STRATIFIED_AUROC, beyond_difficulty_sentences
from pva_dagster.study.evaluation.classification import MIN_THRESHOLD_SAMPLES
from pva_dagster.study.evaluation.confirmatory import (
    CONFIRMATORY,
    EXPLORATORY,
    PRIMARY_REPLICATE,
    confirmatory_family,
    declared_p_values,
    family_labels,
    primary_replicate_p_values,
)
from pva_dagster.study.evaluation.replicate_report import replicate_section
from pva_dagster.study.evaluation.sae_seed_replicates import seed_section
from pva_dagster.study.evaluation.surface_difference import SURFACE_REFERENCE
from pva_dagster.study.plots import auroc_by_layer, markdown_table
from pva_dagster.study.statistics import (
    FISHER_TEST,
    PAIRED_AUROC_DIFFERENCE,
    PAIRED_DIFFERENCE_INTERVAL,
    PAIRED_TEST,
    POWER_ASSUMPTION,
    RANK_TEST,
)
from pva_dagster.study.steering.results import (
    COEFFICIENT_RULE,
    CONTROL_DAMAGE_CEILING,
    NON_INFERIORITY_TEST,
    dose_response_plot,
)
from pva_dagster.study.steering.sweep import NON_INFERIORITY, SUPERIORITY, superiority_experiment

LABEL_TOP_RANKS = 5  # latents per label and direction shown side by side


def sae_quality_section(table: pd.DataFrame) -> list[str]:
    """The report's first section: the SAE quality table over every Phase 1.0 task and a warning per layer whose
    SAE loses much of what differs between tasks."""
    warnings = quality_warnings(table)
    verdict = warnings or [
        f"No layer's SAE loses {BETWEEN_TASK_FVU_WARNING:.0%} or more of the variation between tasks."
    ]
    return [
        "## SAE quality on the study's own residuals",
        ("Every latent result below encodes the residual at the last prompt token of each task with these SAEs. "
         "fvu: share of the residuals' energy the SAE loses (Σ‖x−x̂‖² / Σ‖x‖²). fvu_between_tasks: the same error "
         "against the variation between tasks (Σ‖x−x̂‖² / Σ‖x−x̄‖², x̄ the mean over tasks); at 1 or more the error "
         "is as large as everything that differs between tasks, so the latents need not carry any of it. "
         "between_task_share: Σ‖x−x̄‖² / Σ‖x‖². mean_l0: active latents per task; latents_fired: latents active "
         "on at least one task; dead_on_study_prompts: the others. Two rows per layer: every Phase 1.0 task, and "
         "the validation tasks alone, which no SAE saw in training (the embedded SAEs train on the other splits' "
         "prompts, so only the held-out row measures them fairly; the warnings read it). loss_*: the model's mean "
         "next-token cross-entropy on validation prompts clean, with the layer's output replaced by the SAE's "
         "reconstruction (spliced) and by zeros (zero_ablated); loss_recovered = (zero_ablated − spliced) / "
         "(zero_ablated − clean), SAELens's ce_loss_score: 1 when the reconstruction loses nothing the later "
         "layers use."),
        quality_markdown(table),
        *verdict,
    ]


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _classification_section(overall: pd.DataFrame) -> list[str]:
    best = overall.groupby("direction").head(1)
    table = pd.DataFrame({
        "direction": best.direction, "layer": best.layer, "latent": best.latent,
        "AUROC [95% bootstrap]": [
            _interval(*r) for r in zip(best.auroc, best.auroc_ci_low, best.auroc_ci_high, strict=True)
        ],
        "AUROC p (permutation)": best.auroc_p_permutation,
        "F1 [95% bootstrap]": [_interval(*r) for r in zip(best.f1, best.f1_ci_low, best.f1_ci_high, strict=True)],
        "threshold": best.threshold, "threshold samples": best.threshold_samples,
        "threshold predicts one class": best.threshold_one_class,
        "predicts one class (validation)": best.predicts_one_class,
    })
    notes = []
    if overall.threshold_few_samples.any():
        notes.append(f"Thresholds rest on fewer than {MIN_THRESHOLD_SAMPLES} non-validation samples: F1 is fragile.")
    one_class = int(overall.predicts_one_class.sum())
    if one_class:
        notes.append(
            f"{one_class} of {len(overall)} validated latents' thresholds predict one class only on the validation "
            "split: their F1 is the base rate, not the latent's."
        )
    return [
        "## Exploratory: Phase 2's top latents classified on the validation split, temperature samples included",
        ("Best latent per direction, temperature 0; thresholds chosen on the sae and hyperparams splits (the best "
        "mean F1 over stratified folds, ties to the highest). Intervals: percentile bootstrap over problems; p: "
        "label-permutation test of AUROC > 0.5."),
        markdown_table(table), *notes,
    ]


def _confirmatory(row: Any) -> bool:
    """A validation steering row is confirmatory when it asks superiority at a positive coefficient (a negative
    coefficient subtracts the latent: a different claim, exploratory wherever it appears)."""
    return row.question == SUPERIORITY and float(row.coefficient) > 0


def steering_members(tests: pd.DataFrame) -> dict[str, float]:
    """The steering experiments declared confirmatory (correction, corruption: target > every control, paired,
    at the chosen positive coefficient), by name, with their p-values; preservation asks non-inferiority and is
    reported against its margin instead."""
    return {
        f"steering {row.experiment} (L{row.layer}/{row.latent}): target > control ({PAIRED_TEST})": float(row.p_paired)
        for row in tests.itertuples() if _confirmatory(row)
    }


def _steering_table(tests: pd.DataFrame) -> pd.DataFrame:
    superiority = tests.question == SUPERIORITY
    return pd.DataFrame({
        "experiment": tests.experiment, "latent": [f"L{r.layer}/{r.latent}" for r in tests.itertuples()],
        "family": [CONFIRMATORY if _confirmatory(r) else EXPLORATORY for r in tests.itertuples()],
        "coefficient": tests.coefficient, "problems": tests.n,
        "rate [95% CP]": [_interval(*r) for r in zip(tests.rate, tests.ci_low, tests.ci_high, strict=True)],
        "controls' mean rate": tests.control_rate,
        f"worst control's damage on correct problems (ceiling {CONTROL_DAMAGE_CEILING:.0%})": [
            "" if ok is None or pd.isna(ok) else f"{b:.3f}" + ("" if ok else ": above the ceiling, so the control is "
                                                              "itself disruptive here")
            for b, ok in zip(tests.control_breakage, tests.control_within_ceiling, strict=True)
        ],
        "discordant target:control, per control": tests.discordant,
        "p paired (every control)": tests.p_paired.where(superiority),
        "minimum detectable effect (80 % power)": [
            ("none on this many problems" if np.isnan(m) else f"{m:.3f}") if q == SUPERIORITY else ""
            for q, m in zip(tests.question, tests.minimum_detectable_effect, strict=True)
        ],
        "breakage difference (upper 95 %) vs margin": [
            f"{d:+.3f} ({h:+.3f}) vs {m:.2f}: {'non-inferior' if ok else 'not shown non-inferior'}"
            if q == NON_INFERIORITY else "" for q, d, h, m, ok in zip(
                tests.question, tests.breakage_difference, tests.breakage_ci_high, tests.margin, tests.non_inferior,
                strict=True,
            )
        ],
        "smallest margin these problems can show": tests.smallest_margin_shown.where(~superiority),
        "random directions: mean rate, rank p (directions)": [
            f"{r:.3f}, {p:.3f} ({k})" if k else ("not run" if q == SUPERIORITY else "")
            for r, p, k, q in zip(tests.random_rate, tests.p_rank, tests.random_directions, tests.question, strict=True)
        ],
    })


def _missing_members(tests: pd.DataFrame, chosen: pd.DataFrame) -> list[str]:
    """A sentence per chosen direction whose superiority experiment has no validation row (no eligible problems):
    a declared confirmatory member that could not be computed is said, not dropped silently."""
    ran = set(tests.experiment) if len(tests) else set()
    return [
        f"The {direction} direction's {experiment} could not be tested: no validation problem was eligible (the "
        "confirmatory family above lacks this member)."
        for direction in chosen.direction if (experiment := superiority_experiment(direction)) not in ran
    ]


def _steering_section(
    tests: pd.DataFrame, per_control: pd.DataFrame, chosen: pd.DataFrame, sweep: pd.DataFrame, noise: pd.DataFrame,
) -> list[str]:
    chosen_table = chosen[[
        "direction", "experiment", "coefficient", "contrast", "rate", "control_rate", "control_breakage",
        "met_control_ceiling", "has_data", "fold_choices", "fold_agreement",
    ]]
    return [
        "## Phase 3: steering on the validation split",
        f"Coefficient rule: {COEFFICIENT_RULE}. Chosen over the non-validation problems, each "
        "fold's own choice beside it:", markdown_table(chosen_table),
        (f"Tests: {PAIRED_TEST}, against each control on the same problems; a claim must hold against every "
         "control (largest p). Correction and corruption at the chosen coefficient are members of the confirmatory "
         f"family above (Holm-adjusted there). Preservation: {NON_INFERIORITY_TEST}. Minimum detectable effect: "
         f"{POWER_ASSUMPTION}. Random directions: {RANK_TEST} (exploratory). Rates: 95 % Clopper-Pearson."),
        markdown_table(_steering_table(tests)) if len(tests) else "No steering experiment had eligible problems.",
        *_missing_members(tests, chosen),
        f"Per control ({PAIRED_DIFFERENCE_INTERVAL} of target minus control; {FISHER_TEST}, descriptive):",
        markdown_table(per_control),
        "Dose-response over the non-validation problems (exploratory: the sweep the coefficient was chosen from):",
        dose_response_plot(sweep, str(chosen.coefficient_mode.iloc[0])),
        ("Noise floor: problems whose unsteered rerun (same batches as the steered runs) changed label against "
         "Phase 1.0:"),
        markdown_table(noise),
    ]


def _label_section(readouts: Mapping[str, pd.DataFrame], rule: str) -> list[str]:
    flips, by_label = readouts[outputs.LABEL_FLIPS], readouts[outputs.TOP_LATENTS_BY_LABEL]
    total = flips[flips.split == "all"].iloc[0]
    rejected = (
        f"The extended tests reject {total.flipped} of the {total.base_correct} solutions that pass the three base "
        f"asserts ({total.flipped_share:.0%})." if total.base_correct else "No solution passes the base asserts."
    )
    top = by_label[by_label["rank"] <= LABEL_TOP_RANKS][["label", "direction", "rank", "layer", "latent", "score"]]
    judged = (
        f" A changed judge or changed tests judged {total.judged_again} stored solutions again from their code; "
        f"{total.changed_when_judged_again} labels changed." if total.get("judged_again", 0) else ""
    )
    return [
        f"## What the stronger label changes (exploratory; the study's label: {rule})",
        rejected + judged, markdown_table(flips),
        f"Discovery under each label (sae split, same general-text cut-offs), top {LABEL_TOP_RANKS}:",
        markdown_table(top),
        "Each label's rank-1 latents on validation, scored under either label (AUROC, 95 % bootstrap):",
        markdown_table(readouts[outputs.AUROC_BY_LABEL]),
    ]


def _phase2_section(split: str, ranked: pd.DataFrame) -> list[str]:
    # The table as top_latents.json holds it: its columns in alphabetical order.
    table = pd.DataFrame(ranked.to_dict("records"))
    title = "discovery" if split == SAE_SPLIT else "exploratory: a task's samples share its prompt residual"
    return [
        f"## Phase 2: top latents on the {split} split ({title})",
        f"Samples per group: {_sorted(ranked.attrs['counts'])}. "
        f"General-text filter: {_sorted(ranked.attrs.get('general_corpus'))}.",
        markdown_table(table[sorted(table.columns)].head(10)),
    ]


def _sorted(value: object) -> object:
    """Dicts with their keys sorted at every level, as the report prints them."""
    return {k: _sorted(value[k]) for k in sorted(value)} if isinstance(value, dict) else value


def render_report(
    top_latents: Mapping[str, pd.DataFrame],
    classification: Mapping[str, pd.DataFrame],
    coefficients: Mapping[str, pd.DataFrame],
    steering: Mapping[str, pd.DataFrame],
    readouts: Mapping[str, pd.DataFrame],
    cutoffs: pd.DataFrame,
    label_rule: str,
    sae_quality: pd.DataFrame,
    seed_replicates: Mapping[str, pd.DataFrame],
) -> str:
    """The page, from the tables of the Phase 2 top latents (per split), the classification, the coefficient
    sweep, the validation steering run and the readouts (each a dict of named tables, as the assets return
    them), the general-text cut-off table, the label rule the study used, the SAE quality table (the first
    section) and the selection across SAE seeds (after the replicates). The confirmatory family is declared
    here: the rank-1 latents' AUROC over re-drawn splits against the selection-aware null and their merged value
    beyond difficulty, and steering's correction and corruption, Holm-adjusted together."""
    table, beyond = readouts[outputs.READOUT_TABLE], readouts[outputs.BEYOND_DIFFICULTY]
    sections = ["# Does the model know when its code is correct?", *sae_quality_section(sae_quality)]
    if table.empty:
        family = confirmatory_family(steering_members(steering[outputs.STEERING_TESTS]))
        sections += [
            "## Readouts not computed", f"{table.attrs.get('not_computed', 'no readout table')}.",
            "## The declared confirmatory family (steering only)", markdown_table(family),
            *seed_section(seed_replicates),
        ]
    else:
        rank1 = {
            str(row.direction): int(row.layer) for row in table[table.family == PRIMARY_REPLICATE].itertuples()
        }
        family = confirmatory_family(declared_p_values(
            readouts[outputs.REPLICATE_SUMMARY], list(rank1), extra=steering_members(steering[outputs.STEERING_TESTS])
        ))
        sections += readout_sections(table, beyond, family, rank1)
        sections += replicate_section(readouts)
        sections += seed_section(seed_replicates)
        sections += [
            f"No {direction} latent survived Phase 2's general-text filter: that direction has no confirmatory "
            "member." for direction in DIRECTIONS if direction not in rank1
        ]
        sections += _label_section(readouts, label_rule)
    for split in ("sae", "validation"):
        if split in top_latents:
            sections += _phase2_section(split, top_latents[split])
    sections += _steering_section(
        steering[outputs.STEERING_TESTS], steering[outputs.STEERING_CONTROLS],
        coefficients[outputs.CHOSEN_COEFFICIENTS], coefficients[outputs.SWEEP_TESTS], steering[outputs.STEERING_NOISE],
    )
    sections += _classification_section(classification[outputs.CLASSIFICATION_OVERALL])
    exploratory = [
        ("Exploratory: the top latents at other general-text cut-offs (sae split; reference: the ranking's rule, "
         f"{cutoffs.attrs.get('reference', 'not recorded')})", cutoffs),
        ("Exploratory: Phase 2's discovery latents scored again on validation, one row per task",
         readouts[outputs.DISCOVERY_ON_VALIDATION]),
        ("Exploratory: by temperature and difficulty", classification[outputs.CLASSIFICATION_BY_GROUP]),
        ("Exploratory: coefficient sweep over the non-validation problems (selection, not a result)",
         coefficients[outputs.SWEEP_TESTS].drop(columns="test", errors="ignore")),
        ("Exploratory: steering per unit (validation)", steering[outputs.STEERING_EFFECTS]),
    ]
    for title, frame in exploratory:
        if not frame.empty:
            sections += [f"## {title}", markdown_table(frame)]
    return "\n\n".join(sections) + "\n"


def _differences(readouts: pd.DataFrame) -> list[str]:
    """Each readout's AUROC minus the combined surface baseline's, with its interval, or why there is none."""
    return [
        _interval(d, low, high) if np.isfinite(d) else f"none: {note}"
        for d, low, high, note in zip(
            readouts.auroc_minus_surface, readouts.auroc_minus_surface_ci_low, readouts.auroc_minus_surface_ci_high,
            readouts.auroc_minus_surface_note, strict=True,
        )
    ]


def readout_sections(
    readouts: pd.DataFrame, beyond: pd.DataFrame, family: pd.DataFrame, rank1_layers: Mapping[str, int]
) -> list[str]:
    """The readout sections: the confirmatory family (Holm), the primary replicate's tests of its rank-1 latents
    (exploratory) with one sentence per direction beyond difficulty, the AUROC-by-layer plots, then every readout
    and beyond-difficulty row as exploratory (:func:`readout_table`, :func:`beyond_difficulty_table`,
    :func:`confirmatory_family`)."""
    reported = beyond[family_labels(beyond, rank1_layers) == PRIMARY_REPLICATE]
    primary = primary_replicate_p_values(readouts, beyond, rank1_layers)
    table = pd.DataFrame({
        "readout": readouts.readout, "layer": readouts.layer, "direction": readouts.direction,
        "family": family_labels(readouts, rank1_layers),
        "AUROC [95% bootstrap]": [
            _interval(*r) for r in zip(readouts.auroc, readouts.auroc_ci_low, readouts.auroc_ci_high, strict=True)
        ],
        "AUROC p (permutation)": readouts.auroc_p_permutation,
        "AP (prevalence)": [f"{a:.3f} ({p:.3f})" for a, p in zip(readouts.average_precision, readouts.prevalence,
                                                                 strict=True)],
        "F1 (majority-class F1)": [f"{f:.3f} ({m:.3f})" for f, m in zip(readouts.f1, readouts.majority_f1,
                                                                       strict=True)],
        "balanced accuracy": readouts.balanced_accuracy, "MCC": readouts.mcc,
        "threshold": [f"{o} {t:.4g}" for o, t in zip(readouts.threshold_operator, readouts.threshold, strict=True)],
        f"AUROC minus {SURFACE_REFERENCE} [95% paired bootstrap]": _differences(readouts),
        "difference p (DeLong)": readouts.auroc_minus_surface_p,
    })
    return [
        "## Readouts: the declared confirmatory family (over re-drawn splits, Holm-adjusted together)",
        ("Per direction, its rank-1 latent re-selected and scored on each re-drawn split (the replicates section "
         "below): the median validation AUROC against the selection-aware permutation null, and the "
         "likelihood-ratio tests beyond length and complexity merged as twice their median p (valid however the "
         "overlapping splits make them depend on each other); steering's members join them."),
        markdown_table(family),
        ("Exploratory, the primary replicate (the study's own split, one draw; its tests do not account for the "
         "selection of the latent):"),
        markdown_table(pd.DataFrame({"member": list(primary), "p": list(primary.values()),
                                     "family": PRIMARY_REPLICATE})),  # fmt: skip
        *beyond_difficulty_sentences(reported),
        *[auroc_by_layer(readouts, direction) for direction in sorted(readouts.direction.unique())],
        ("## Readouts: baselines, probes and best latents (exploratory; the primary replicate's rank-1 latents "
         "marked)\n\nFitted on "
         "the sae and hyperparams splits, C and thresholds chosen by cross-validation over them (C: mean fold "
         "AUROC, ties to the smaller; C_fold_agreement: the share of folds whose own best C it is); scored once on "
         "validation. Each AUROC is set "
         f"against {SURFACE_REFERENCE} (a logistic regression on prompt length and complexity together): "
         f"{PAIRED_AUROC_DIFFERENCE}. An interval that covers 0 means nothing beyond length and complexity is "
         "detectable at this power, not that there is nothing: its ends are what this split cannot rule out."),
        markdown_table(table),
        f"## Exploratory: beyond difficulty, every probe and latent ({STRATIFIED_AUROC}, pooled within-bucket pairs)",
        markdown_table(beyond.drop(columns="test")),
    ]
