"""Train the embedded profile's SAEs: SAELens TopK SAEs on the embedded model's residual stream over the
Python standard library's own source (a real code corpus present on every machine) and at the study's readout
token.

The study encodes one residual per task: the last prompt token, the same token of the same template for every
task. Those residuals sit in a tight cluster far from the corpus' mean, and what differs between tasks is about
1 % of their energy. An SAE trained on the corpus alone spends its k latents on the cluster's offset and loses
what varies: its error on held-out readouts was 26 times their between-task variance. So the training data also
holds the residuals at the readout token of problem-format prompts (the study's template, the problems of the
``sae`` and ``hyperparams`` splits), repeated to ``readout_share`` of the training samples, and the decoder bias
``b_dec`` is held at their mean: the latents then encode departures from the readout cluster's centre, which is
what differs between tasks, instead of the centre itself. Measured on SmolLM2 (docs/runs.md), that brings the
held-out ``fvu_between_tasks`` to about 0.3; mixing alone (b_dec learnt) reaches about 0.55, centring alone
(corpus only) about 0.95. A share of 0.25 keeps as much of the held-out variation as 0.5 and more of the corpus.

The SAE is unsupervised and no label is read, but the validation split's prompts still never enter its training
data: the readouts are judged on validation, and an SAE fitted to those very prompts represents them better than
a new task (training prompts measured 0.12 where held-out ones measured 0.3), which a held-out result must not
see. Everything is seeded: the corpus files, the prompts (task order), the repetition (in order) and the SAE.

Two SAEs trained alike but from other seeds share only part of their latents, so a latent index found in one
means nothing in the other. Each layer therefore also gets ``seed_variants`` SAEs that differ from the primary in
their seed alone (``seed + 1``, ``seed + 2``, ...), trained on the same collected rows, each in its own folder
with its own fingerprint: a finding that holds across them is one about a direction, not one SAE's latent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
import torch

from pva_dagster.study import storage
from pva_dagster.study.analysis.corpus import (
    DEFAULT_CODE_FILES,
    collect_readout_residuals,
    collect_residuals,
    corpus_fingerprint,
    stdlib_code_corpus,
)
from pva_dagster.study.analysis.sae import (
    MADE_BY_FILE,
    load_local_sae,
    reconstruction_report,
    sae_hook_layer,
    save_sae,
    train_topk_sae,
)
from pva_dagster.study.domain import DEFAULT_SEED, HYPERPARAMS_SPLIT, SAE_SPLIT
from pva_dagster.study.generation.labelled_generation import PromptFormat
from pva_dagster.study.generation.model_loading import model_fingerprint
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.records import fingerprint

# The only splits whose prompts an SAE trains on (an allow-list: a problem in no split, or in validation, is
# never read).
READOUT_TRAINING_SPLITS: tuple[str, ...] = (SAE_SPLIT, HYPERPARAMS_SPLIT)
READOUT_BATCH = 16


@dataclass(frozen=True)
class SAETrainingPlan:
    d_sae: int = 2048
    k: int = 32
    corpus_tokens: int = 40_000  # residuals collected once (the slow part: one forward pass per token)
    training_tokens: int = 120_000  # SAE training samples, cycling over the collected residuals
    # Measured on SmolLM2 layers 6-24 (2048 latents, k 32): batch 1024 / lr 4e-4 barely trains in a short run
    # (held-out FVU ~0.95); batch 256 / lr 3e-3 over three passes of 32k tokens reaches 0.13-0.34.
    batch_size: int = 256
    lr: float = 3e-3
    corpus_files: int = DEFAULT_CODE_FILES  # standard-library files the corpus draws from
    context_len: int = 128
    # Share of the training rows that are readout residuals (each repeated to fill it); 0 trains on the corpus
    # alone. Readout rows come from the last readout_positions tokens of each non-validation prompt; more than 1
    # puts the mean (b_dec) between the clusters of different template tokens, measured worse on the readout.
    readout_share: float = 0.25
    readout_positions: int = 1
    centre_on_readout: bool = True  # hold b_dec at the readout rows' mean (else: learnt from the rows' mean)
    seed: int = DEFAULT_SEED
    # SAEs per layer besides the primary, alike but for their seeds (seed + 1, ...): two are the fewest that show
    # whether a direction the primary finds recurs beyond one other draw. They cost training time only.
    seed_variants: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.readout_share < 1:
            raise ValueError(f"readout_share must be in [0, 1), got {self.readout_share}")
        if self.readout_positions < 1:
            raise ValueError(f"readout_positions must be at least 1, got {self.readout_positions}")
        if self.seed_variants < 0:
            raise ValueError(f"seed_variants must be at least 0, got {self.seed_variants}")

    @property
    def variant_seeds(self) -> tuple[int, ...]:
        """The seeds of the variants, after the primary's own."""
        return tuple(self.seed + offset for offset in range(1, self.seed_variants + 1))

    def for_seed(self, seed: int) -> SAETrainingPlan:
        """The plan of one SAE of this family: this plan's settings under ``seed``, with no variants of its own."""
        return replace(self, seed=seed, seed_variants=0)


@dataclass(frozen=True)
class ReadoutPrompts:
    """The prompts whose readout residuals join the SAE training data, and Phase 1's prompt truncation."""

    prompts: tuple[str, ...]
    max_prompt_tokens: int


def readout_training_prompts(
    problems: pd.DataFrame, splits: pd.DataFrame, prompt_format: PromptFormat, tokenizer: Any
) -> tuple[str, ...]:
    """The prompts of the problems in ``READOUT_TRAINING_SPLITS``, in task order, formatted as Phase 1 formats them.

    ``splits``: task_id -> split (the ``problem_splits`` asset). Validation problems, and problems in no split,
    are left out."""
    allowed = set(splits.task_id[splits.split.isin(READOUT_TRAINING_SPLITS)].astype(int))
    chosen = problems[problems.task_id.astype(int).isin(allowed)].sort_values("task_id")
    if chosen.empty:
        raise ValueError(f"no problem is in the splits {list(READOUT_TRAINING_SPLITS)}: no readout prompts")
    return tuple(prompt_format.prompts(chosen, tokenizer).values())


def mix_readout_rows(
    corpus: torch.Tensor,  # [n_corpus, d_model]
    readout: torch.Tensor,  # [n_readout, d_model]
    share: float,
) -> torch.Tensor:  # [n_corpus + round(share / (1 - share) * n_corpus), d_model]
    """The corpus rows, then the readout rows cycled in order until they are ``share`` of all rows."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    n = round(share / (1 - share) * len(corpus))
    if n and not len(readout):
        raise ValueError(f"share {share} of readout rows asked for, but there are none")
    return torch.cat([corpus, readout[torch.arange(n) % max(len(readout), 1)]])


def train_layer_sae(
    corpus: torch.Tensor,  # [n_corpus, d_model]
    readout: torch.Tensor,  # [n_readout, d_model]
    layer: int,
    plan: SAETrainingPlan,
) -> tuple[Any, dict[str, Any]]:
    """One layer's SAE under ``plan``: corpus and readout rows mixed, b_dec held at the readout mean or learnt."""
    rows = mix_readout_rows(corpus, readout, plan.readout_share)
    centre = readout.mean(0) if plan.centre_on_readout else None
    return train_topk_sae(
        rows, layer=layer, d_sae=plan.d_sae, k=plan.k, training_tokens=plan.training_tokens,
        batch_size=plan.batch_size, lr=plan.lr, seed=plan.seed, decoder_bias=centre,
        train_decoder_bias=not plan.centre_on_readout,
    )


def _reads_prompts(plan: SAETrainingPlan) -> bool:
    return plan.readout_share > 0 or plan.centre_on_readout


def _trained_settings(plan: SAETrainingPlan) -> dict[str, Any]:
    """What the SAEs are trained from: the plan less the number of variants, which adds SAEs and changes none
    (a primary made before variants existed stays current)."""
    settings = asdict(plan)
    del settings["seed_variants"]
    return settings


def train_embedded_saes(
    model: Any,
    tokenizer: Any,
    layers: Sequence[int],
    layout: DataLayout,
    plan: SAETrainingPlan,
    readout: ReadoutPrompts,
    log: Callable[[str], None] = print,
) -> dict[int, dict[str, float]]:
    """Train one SAE per layer, and ``plan.seed_variants`` more under ``plan.variant_seeds``, wherever none is
    made from this model (its dtype included), settings, seed and readout prompts; return each trained primary's
    reconstruction report. An SAE made otherwise is retrained; the residuals are collected once for all of them."""
    folders = {(layer, plan.seed): layout.sae_dir(layer) for layer in layers}
    folders |= {(layer, seed): layout.sae_variant_dir(layer, seed) for seed in plan.variant_seeds for layer in layers}
    prompts = corpus_fingerprint(readout.prompts) if _reads_prompts(plan) else None
    # Every SAE of a layer reads the corpus drawn under plan.seed; a variant adds its own seed to what made it.
    made_by = {
        (layer, seed): fingerprint(
            model_fingerprint(model), _trained_settings(plan), layer, prompts, readout.max_prompt_tokens,
            *(() if seed == plan.seed else ({"variant_seed": seed},)),
        )
        for layer, seed in folders
    }

    def current(key: tuple[int, int]) -> bool:
        marker = folders[key] / MADE_BY_FILE
        return marker.is_file() and marker.read_text() == made_by[key]

    todo = [key for key in folders if not current(key)]
    if not todo:
        return {}
    todo_layers = sorted({layer for layer, _ in todo})
    started = time.perf_counter()
    texts = stdlib_code_corpus(max_files=plan.corpus_files, seed=plan.seed)
    residuals = collect_residuals(
        model, tokenizer, texts, todo_layers, context_len=plan.context_len, max_tokens=plan.corpus_tokens,
        batch_size=16,
    )
    readouts = (
        collect_readout_residuals(
            model, tokenizer, readout.prompts, todo_layers, plan.readout_positions, readout.max_prompt_tokens,
            READOUT_BATCH,
        )
        if _reads_prompts(plan)
        else {layer: torch.empty(0, residuals[layer].shape[1]) for layer in todo_layers}
    )
    first = todo_layers[0]
    log(f"collected {len(residuals[first])} corpus and {len(readouts[first])} readout residual tokens "
        f"({len(readout.prompts)} prompts) for layers {todo_layers} in {time.perf_counter() - started:.0f} s")
    reports = {}
    for layer, seed in todo:
        started = time.perf_counter()
        sae, training = train_layer_sae(residuals[layer], readouts[layer], layer, plan.for_seed(seed))
        save_sae(sae, folders[layer, seed], made_by[layer, seed])
        report = {**training, **reconstruction_report(sae, residuals[layer])}
        if len(readouts[layer]) > 1:  # the centred FVU of the training prompts' readouts (not held out)
            report["readout_fvu_between_tasks"] = reconstruction_report(sae, readouts[layer])["fvu"]
        report["seconds"] = time.perf_counter() - started
        which = "SAE" if seed == plan.seed else f"seed variant {seed}"
        log(f"layer {layer}: {which} trained in {report['seconds']:.0f} s, corpus FVU {report['fvu']:.3f}, "
            f"L0 {report['l0']:.1f}")
        if seed == plan.seed:
            reports[layer] = report
    return reports


def load_variant(layout: DataLayout, layer: int, seed: int, device: str = "cpu") -> Any:
    """The seed variant ``seed`` of layer ``layer``'s embedded SAE; raises naming both when it was never trained."""
    folder = layout.sae_variant_dir(layer, seed)
    if not (folder / MADE_BY_FILE).is_file():
        raise FileNotFoundError(
            f"no SAE seed variant for layer {layer}, seed {seed} at {folder}: materialize sae_weights with a "
            "seed_variants that covers this seed"
        )
    sae = load_local_sae(folder, device)
    if sae_hook_layer(sae) != layer:
        raise ValueError(f"the SAE seed variant at {folder} reads layer {sae_hook_layer(sae)}, not {layer}")
    return sae


def record_variant_seeds(layout: DataLayout, plan: SAETrainingPlan) -> None:
    """Write the seeds of the variants ``plan`` makes, so that what reads the SAEs reads these and no others (a
    variant folder left by a run with more variants is not one of them)."""
    storage.write_json(layout.sae_variant_seeds_file, {"seed": plan.seed, "variant_seeds": list(plan.variant_seeds)})


def recorded_variant_seeds(layout: DataLayout) -> tuple[int, ...]:
    """The seeds :func:`record_variant_seeds` wrote; raises when ``sae_weights`` never wrote them."""
    path = layout.sae_variant_seeds_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: materialize sae_weights, which records its seed variants")
    return tuple(int(seed) for seed in json.loads(path.read_text())["variant_seeds"])
