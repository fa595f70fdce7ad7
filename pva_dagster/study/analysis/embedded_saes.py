"""Train the embedded profile's SAEs: SAELens TopK SAEs on the embedded model's residual stream over the
Python standard library's own source (a real code corpus present on every machine)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pva_dagster.study.analysis.corpus import DEFAULT_CODE_FILES, collect_residuals, stdlib_code_corpus
from pva_dagster.study.analysis.sae import MADE_BY_FILE, reconstruction_report, save_sae, train_topk_sae
from pva_dagster.study.domain import DEFAULT_SEED
from pva_dagster.study.generation.model_loading import model_fingerprint
from pva_dagster.study.records import fingerprint


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
    seed: int = DEFAULT_SEED


def train_embedded_saes(
    model: Any,
    tokenizer: Any,
    layers: Sequence[int],
    out_dir: Callable[[int], Path],
    plan: SAETrainingPlan,
    log: Callable[[str], None] = print,
) -> dict[int, dict[str, float]]:
    """Train one SAE per layer that has none made from this model (its dtype included) and plan; return each
    trained layer's reconstruction report. An SAE made otherwise (another dtype, plan or model) is retrained."""
    made_by = {layer: fingerprint(model_fingerprint(model), asdict(plan), layer) for layer in layers}

    def current(layer: int) -> bool:
        marker = out_dir(layer) / MADE_BY_FILE
        return marker.is_file() and marker.read_text() == made_by[layer]

    todo = [layer for layer in layers if not current(layer)]
    if not todo:
        return {}
    started = time.perf_counter()
    texts = stdlib_code_corpus(max_files=plan.corpus_files, seed=plan.seed)
    residuals = collect_residuals(
        model, tokenizer, texts, todo, context_len=plan.context_len, max_tokens=plan.corpus_tokens,
        batch_size=16,
    )
    log(f"collected {len(next(iter(residuals.values())))} residual tokens for layers {todo} "
        f"in {time.perf_counter() - started:.0f} s")
    reports = {}
    for layer in todo:
        started = time.perf_counter()
        sae, training = train_topk_sae(
            residuals[layer], layer=layer, d_sae=plan.d_sae, k=plan.k, training_tokens=plan.training_tokens,
            batch_size=plan.batch_size, lr=plan.lr, seed=plan.seed,
        )
        save_sae(sae, out_dir(layer), made_by[layer])
        reports[layer] = {
            **training, **reconstruction_report(sae, residuals[layer]), "seconds": time.perf_counter() - started
        }
        log(f"layer {layer}: SAE trained, FVU {reports[layer]['fvu']:.3f}, L0 {reports[layer]['l0']:.1f}")
    return reports
