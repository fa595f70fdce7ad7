"""Generation throughput: one prompt at a time vs batched, and with vs without residual capture.

    .venv/bin/python bench/generation.py [--n-prompts 16] [--max-new-tokens 64] [--batch-size 8]
        [--model PATH_OR_HUB_ID | --gemma2-random] [--device cpu|cuda] [--dtype float32]

Default model: the embedded SmolLM2-135M-Instruct (converted once under --cache). ``--gemma2-random`` builds
google/gemma-2-2b's architecture (Gemma2Config: hidden 2304, 26 layers, vocab 256000) with random weights and
a small trained tokenizer: the real study's compute without a download, meant for a GPU. All timings come from
one invocation, greedy, prompts from the embedded MBPP-style problems; the stop rule is off so every row
generates exactly --max-new-tokens and the runs compare like with like.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pva_dagster.study.generation import GenerationSettings, generate
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.models import (
    DTYPES,
    convert_gguf_to_safetensors,
    load_causal_lm,
    locate_embedded_gguf,
    model_fingerprint,
    stop_token_ids,
)
from pva_dagster.study.problems import load_embedded
from pva_dagster.study.prompts import build_prompt
from pva_dagster.study.random_models import GEMMA2_2B, GEMMA2_2B_VOCAB, random_gemma2, train_code_tokenizer
from pva_dagster.study.residual import decoder_blocks
from pva_dagster.study.runtime import apply_offline_defaults

# The folder the pipeline converts the embedded model into (resources.language_model.EMBEDDED_MODEL_DIR).
DEFAULT_CACHE = DataLayout(Path(__file__).resolve().parents[1] / "data").models_dir / "smollm2-135m-instruct"


def random_gemma2_2b(device: str, dtype: str) -> tuple[Any, Any]:
    tokenizer = train_code_tokenizer()
    tokenizer.padding_side = "left"
    model = random_gemma2(tokenizer, GEMMA2_2B, vocab_size=GEMMA2_2B_VOCAB, dtype=DTYPES[dtype], device=device)
    return model, tokenizer


def timed(model: Any, tokenizer: Any, prompts: list[str], layers: list[int], settings: GenerationSettings):
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    generations = [
        g
        for batch in generate(model, tokenizer, prompts, layers, settings, stop_token_ids(model, tokenizer))
        for g in batch
    ]
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return generations, sum(g.n_new_tokens for g in generations) / seconds, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help="local folder or hub id (default: the embedded SmolLM2)"
    )
    source.add_argument("--gemma2-random", action="store_true", help="random-weight Gemma-2-2B architecture")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, choices=sorted(DTYPES), help="default: bfloat16 on cuda, else float32"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the embedded model is converted"
    )
    args = parser.parse_args(argv)
    for name in ("n_prompts", "max_new_tokens", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")

    started = time.perf_counter()
    if args.gemma2_random:
        model, tokenizer = random_gemma2_2b(args.device, dtype)
    else:
        name = args.model or str(convert_gguf_to_safetensors(locate_embedded_gguf(), args.cache))
        model, tokenizer = load_causal_lm(name, dtype=dtype, device=args.device)
    print(
        f"model {model_fingerprint(model)} on {args.device} ({dtype}), "
        f"ready in {time.perf_counter() - started:.1f} s"
    )

    embedded = load_embedded()
    problems = (embedded * (args.n_prompts // len(embedded) + 1))[: args.n_prompts]
    prompts = [build_prompt(p.text, p.test_list) for p in problems]
    all_layers = list(range(len(decoder_blocks(model))))

    def settings(batch_size: int) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=args.max_new_tokens, batch_size=batch_size, stop_at_function_end=False
        )

    timed(
        model, tokenizer, prompts[:1], all_layers, GenerationSettings(max_new_tokens=4, batch_size=1)
    )  # warm-up
    one, one_tps, one_s = timed(model, tokenizer, prompts, all_layers, settings(1))
    batched, batched_tps, batched_s = timed(model, tokenizer, prompts, all_layers, settings(args.batch_size))
    _, bare_tps, bare_s = timed(model, tokenizer, prompts, [], settings(args.batch_size))

    same = sum(a.completion == b.completion for a, b in zip(one, batched))
    print(
        f"{len(prompts)} prompts x {args.max_new_tokens} new tokens, capture = all {len(all_layers)} layers"
    )
    print(f"one at a time, capture:       {one_tps:8.1f} new tokens/s ({one_s:.1f} s)")
    print(
        f"batch {args.batch_size:>3}, capture:          {batched_tps:8.1f} new tokens/s ({batched_s:.1f} s)"
    )
    print(f"batch {args.batch_size:>3}, no capture:       {bare_tps:8.1f} new tokens/s ({bare_s:.1f} s)")
    print(f"batched / one at a time:      {batched_tps / one_tps:8.2f}x")
    print(f"capture / no capture:         {batched_tps / bare_tps:8.2f}x")
    print(f"batched completions equal to one at a time: {same}/{len(prompts)}")
    if model.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
