"""Phase 2 scoring speed: the vectorised ``separation_scores`` against a plain per-latent loop.

    .venv/bin/python bench/separation.py [--samples 10000] [--latents 16384] [--layers 3] [--density 0.015]
                                         [--loop-latents 256]

Synthetic sparse SAE activations (float32, each entry active with probability ``--density``, exponential
values) stand in for the real study's size: 10,000 samples x GemmaScope's 16,384 latents x 3 layers. Layers are
generated and scored one at a time, as the Phase 2 asset does. The loop (per latent: fractions, means and
``scipy.stats.ttest_ind(equal_var=False)``) is timed on the first ``--loop-latents`` latents of the first layer
and extrapolated to all latents of all layers; its results are checked against the vectorised ones. Both
timings come from the same invocation. Peak memory: tracemalloc's peak of the scoring call (numpy reports its
allocations to it) and the process's peak resident set.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy import stats

from pva_dagster.study.analysis.separation import separation_scores


def synthetic_latents(rng: np.random.Generator, samples: int, latents: int, density: float) -> np.ndarray:
    out = np.zeros((samples, latents), dtype=np.float32)
    hits = rng.integers(0, out.size, int(out.size * density))
    out.flat[hits] = rng.exponential(1.0, len(hits)).astype(np.float32)
    return out


def loop_scores(latents: np.ndarray, correct: np.ndarray, layer: int, n_latents: int) -> pd.DataFrame:
    """The straightforward version: one latent at a time, with scipy's Welch test."""
    rows = []
    for latent in range(n_latents):
        a = latents[correct, latent].astype(np.float64)
        b = latents[~correct, latent].astype(np.float64)
        f_correct, f_incorrect = float(np.mean(a > 0)), float(np.mean(b > 0))
        rows.append({
            "layer": layer, "latent": latent, "f_correct": f_correct, "f_incorrect": f_incorrect,
            "s_correct": f_correct - f_incorrect, "mean_correct": a.mean(), "mean_incorrect": b.mean(),
            "t_stat": stats.ttest_ind(a, b, equal_var=False).statistic,
        })
    return pd.DataFrame(rows)


def timed_scores(latents: np.ndarray, correct: np.ndarray, layer: int) -> tuple[pd.DataFrame, float, int]:
    """``separation_scores`` with its wall time and tracemalloc's peak of what it allocated."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        scores = separation_scores(latents, correct, layer)
        seconds = time.perf_counter() - start
        return scores, seconds, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--latents", type=int, default=16_384)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--density", type=float, default=0.015, help="fraction of active entries")
    parser.add_argument("--pass-rate", type=float, default=0.3, help="fraction of samples labelled correct")
    parser.add_argument("--loop-latents", type=int, default=256, help="latents the per-latent loop is timed on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.loop_latents <= args.latents:
        parser.error(f"--loop-latents must be in 1..{args.latents}, got {args.loop_latents}")
    rng = np.random.default_rng(args.seed)
    correct = rng.random(args.samples) < args.pass_rate
    print(
        f"{args.samples} samples ({correct.sum()} correct) x {args.latents} latents x {args.layers} layers, "
        f"density {args.density}, {os.cpu_count()} cores"
    )

    first_layer = synthetic_latents(rng, args.samples, args.latents, args.density)
    first_scores, vectorised_s, peak_bytes = timed_scores(first_layer, correct, 0)
    for layer in range(1, args.layers):
        latents = synthetic_latents(rng, args.samples, args.latents, args.density)
        _, seconds, peak = timed_scores(latents, correct, layer)
        vectorised_s, peak_bytes = vectorised_s + seconds, max(peak_bytes, peak)

    start = time.perf_counter()
    looped = loop_scores(first_layer, correct, 0, args.loop_latents)
    loop_subset_s = time.perf_counter() - start
    loop_s = loop_subset_s * args.latents * args.layers / args.loop_latents

    head = first_scores.iloc[: args.loop_latents].reset_index(drop=True)
    for column in ("f_correct", "f_incorrect", "s_correct", "mean_correct", "mean_incorrect", "t_stat"):
        np.testing.assert_allclose(head[column], looped[column], rtol=1e-9, atol=1e-12, err_msg=column)

    print(f"vectorised separation_scores, all layers:  {vectorised_s:8.2f} s (measured)")
    print(
        f"per-latent loop, all layers:               {loop_s:8.1f} s (extrapolated from {loop_subset_s:.2f} s "
        f"on {args.loop_latents} latents of one layer)"
    )
    print(f"speed-up:                                  {loop_s / vectorised_s:8.0f}x")
    print(f"scoring peak allocation (tracemalloc):     {peak_bytes / 2**20:8.1f} MiB")
    print(f"input per layer (float32):                 {first_layer.nbytes / 2**20:8.1f} MiB")
    # ru_maxrss is in KiB on Linux.
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"process peak RSS:                          {peak_rss_mib:8.1f} MiB")
    print("results of the loop and the vectorised path agree on the looped latents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
