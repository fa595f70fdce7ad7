"""``pva-check-gpu``: is this machine ready for the study's GPU runs?

Reports the torch build, every CUDA device with its free/total memory, and runs one short forward pass on each
(a small MLP; with ``--model PATH`` also a local Hugging Face causal LM; with ``--gemma2-random`` a random-weight
model of google/gemma-2-2b's full shape, built offline by ``rehearsal/random_models.py``, in bfloat16). Without a GPU
it says so and exits 0, or 1 with ``--require-gpu``; any failing device exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from pva_dagster.study.runtime import apply_offline_defaults

GIB = 1024**3


def mlp_forward(device: torch.device) -> float:
    """One forward pass of a small seeded MLP on ``device``; returns milliseconds. Raises if not finite."""
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 512))
    model = model.to(device).eval()
    batch = torch.randn(64, 512, generator=generator).to(device)  # [batch, features]
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if out.shape != (64, 512) or not torch.isfinite(out).all():
        raise RuntimeError(f"MLP forward on {device} gave shape {tuple(out.shape)} or non-finite values")
    return elapsed_ms


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _load_local(model_dir: Path, device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=_dtype(device), device_map=device, local_files_only=True
    )
    return model, tokenizer


def _random_gemma2_2b(device: torch.device) -> tuple[Any, Any]:
    from pva_dagster.rehearsal.random_models import (
        GEMMA2_2B,
        GEMMA2_2B_VOCAB,
        random_gemma2,
        train_code_tokenizer,
    )

    tokenizer = train_code_tokenizer()
    model = random_gemma2(tokenizer, GEMMA2_2B, vocab_size=GEMMA2_2B_VOCAB, dtype=_dtype(device), device=str(device))
    return model, tokenizer


def model_forward(name: str, load: Callable[[torch.device], tuple[Any, Any]], device: torch.device) -> str:
    """Load a causal LM onto ``device`` with ``load`` and run one forward; returns a one-line summary."""
    model, tokenizer = load(device)
    inputs = tokenizer("def add(a, b):\n    return", return_tensors="pt").to(device)
    with torch.inference_mode():
        logits = model(**inputs).logits  # [1, tokens, vocab]
    if not torch.isfinite(logits).all():
        raise RuntimeError(f"{name} produced non-finite logits on {device}")
    next_token = tokenizer.decode(logits[0, -1].argmax().item())
    dtype = model.dtype
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return f"{name}: logits {tuple(logits.shape)} in {dtype}, next token {next_token!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pva-check-gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--require-gpu", action="store_true", help="exit 1 when no CUDA GPU is visible")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--model", type=Path, default=None, help="local Hugging Face causal-LM folder to try")
    models.add_argument(
        "--gemma2-random", action="store_true", help="a random-weight model of google/gemma-2-2b's full shape"
    )
    args = parser.parse_args(argv)
    apply_offline_defaults()
    if args.model is not None and not args.model.is_dir():
        print(f"--model {args.model}: not a folder", file=sys.stderr)
        return 2
    models_to_try: list[tuple[str, Callable[[torch.device], tuple[Any, Any]]]] = []
    if args.model is not None:
        models_to_try.append((args.model.name, partial(_load_local, args.model)))
    if args.gemma2_random:
        models_to_try.append(("random Gemma-2-2B", _random_gemma2_2b))

    print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none (CPU-only build)'}")
    if not torch.cuda.is_available():
        print("No CUDA GPU available: torch.cuda.is_available() is False.")
        if args.require_gpu:
            return 1  # before any model: --gemma2-random alone would take ~10 GB of CPU memory
        for name, load in models_to_try:
            print(f"cpu: {model_forward(name, load, torch.device('cpu'))}")
        return 0

    count = torch.cuda.device_count()
    print(f"{count} CUDA device(s) visible")
    failures = 0
    for index in range(count):
        device = torch.device("cuda", index)
        name = torch.cuda.get_device_name(index)
        try:
            free, total = torch.cuda.mem_get_info(index)
            line = f"cuda:{index} {name}: {free / GIB:.1f} / {total / GIB:.1f} GiB free"
            line += f", MLP forward {mlp_forward(device):.1f} ms"
            for model_name, load in models_to_try:
                line += f", {model_forward(model_name, load, device)}"
            print(line)
        except Exception as error:  # noqa: BLE001 - report every device, then fail: one bad card hides no other
            failures += 1
            print(f"cuda:{index} {name}: FAILED: {type(error).__name__}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
