"""SAE training in float32 against bfloat16 autocast (SAELens's ``autocast``), in one run, as ratios.

    .venv/bin/python bench/sae_training.py [--layer 12] [--rounds 2] [--training-tokens 120000]

Both arms train the embedded profile's SAE (``SAETrainingPlan``: 2048 latents, k 32, batch 256) on the same
SmolLM2 residuals of the standard-library corpus, alternated round by round so that load from other processes
hits each alike. Prints seconds per training, the ratio, and each SAE's FVU on held-out corpus rows (the last
tenth, never trained on), so that a speed-up is seen beside what it costs in reconstruction. On a CPU without
native bfloat16 (no avx512_bf16 / amx_bf16) autocast is emulated and slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from pva_dagster.study.analysis.corpus import collect_residuals, stdlib_code_corpus
from pva_dagster.study.analysis.embedded_saes import SAETrainingPlan
from pva_dagster.study.analysis.sae import reconstruction_report, train_topk_sae
from pva_dagster.study.generation.model_loading import convert_gguf_to_safetensors, load_causal_lm, locate_embedded_gguf
from pva_dagster.study.layout import DataLayout

CACHE = DataLayout(Path(__file__).resolve().parents[1] / "data").models_dir / "smollm2-135m-instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--training-tokens", type=int, default=SAETrainingPlan.training_tokens)
    args = parser.parse_args()
    plan = SAETrainingPlan()
    model, tokenizer = load_causal_lm(str(convert_gguf_to_safetensors(locate_embedded_gguf(), CACHE)))
    texts = stdlib_code_corpus(max_files=plan.corpus_files, seed=plan.seed)
    residuals = collect_residuals(model, tokenizer, texts, [args.layer], plan.context_len, plan.corpus_tokens, 16)
    rows = residuals[args.layer]
    held_out = len(rows) // 10
    train, test = rows[:-held_out], rows[-held_out:]
    seconds: dict[bool, list[float]] = {False: [], True: []}
    fvu: dict[bool, float] = {}
    print(f"load average at start {os.getloadavg()[0]:.1f}; {len(train)} training rows, layer {args.layer}")
    for _ in range(args.rounds):
        for autocast in (False, True):
            started = time.perf_counter()
            sae, _ = train_topk_sae(
                train, layer=args.layer, d_sae=plan.d_sae, k=plan.k, training_tokens=args.training_tokens,
                batch_size=plan.batch_size, lr=plan.lr, seed=plan.seed, autocast=autocast,
            )
            seconds[autocast].append(time.perf_counter() - started)
            with torch.no_grad():
                fvu[autocast] = reconstruction_report(sae, test)["fvu"]
    base, fast = (statistics.median(seconds[a]) for a in (False, True))
    print(f"float32:           {base:6.1f} s (median of {args.rounds}), held-out FVU {fvu[False]:.4f}")
    print(f"bfloat16 autocast: {fast:6.1f} s (median of {args.rounds}), held-out FVU {fvu[True]:.4f}")
    print(f"speed-up {base / fast:.2f}x; load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
