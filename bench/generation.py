"""Phase 1 generation throughput: the decode loop against the path of an earlier commit, in one run, as ratios.

    .venv/bin/python bench/generation.py [--n-prompts 24] [--max-new-tokens 128] [--batch-size N|auto [N|auto ...]]
        [--rounds 1] [--baseline-ref f71fee2] [--model PATH_OR_HUB_ID | --gemma2-random] [--device cpu|cuda]
        [--dtype float32 [bfloat16 ...]]

The paths run over the same prompts, all greedy with residual capture on every layer and the function-end stop
rule on, as Phase 1 runs them, alternated round by round so that load from other processes hits each alike:

- baseline: ``generate`` as it was at ``--baseline-ref`` (read from git; f71fee2 is the decode path before batching,
  ``model.generate`` with a stop rule that decoded every row each step), batches of 8 in task order;
- new @ 8: ``generate`` now (``decoding.decode``: finished rows leave the batch), batches of 8, sorted by length;
- new @ N: ``generate`` now at the batch size Phase 1 would choose here (``auto_batch_size``) or at each
  --batch-size (``--baseline-ref none`` leaves the baseline out, and with --batch-size new @ 8 too: a table of
  batch sizes). It prints the automatic choice for these prompts (as Phase 1 makes it) and for the whole
  prompt budget, and on CUDA each path's peak memory.

With several ``--dtype`` values every path runs in each dtype (one model loaded per dtype), side by side,
as ratios to the first: ``--baseline-ref none --dtype float32 bfloat16`` is the dtype comparison.

It prints new tokens/s of each, the ratios, whether the greedy completions equal the baseline's, and the load
average (other processes share the cores) at the start and end of each run.
Default model: the embedded SmolLM2-135M-Instruct (converted once under --cache). ``--gemma2-random`` builds
google/gemma-2-2b's architecture (Gemma2Config: hidden 2304, 26 layers, vocab 256000) with random weights and
a small trained tokenizer: the real study's compute without a download, meant for a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from pva_dagster.rehearsal.random_models import GEMMA2_2B, GEMMA2_2B_VOCAB, random_gemma2, train_code_tokenizer
from pva_dagster.study.generation.batched import (
    auto_batch_size,
    generate,
    longest_prompt_tokens,
)
from pva_dagster.study.generation.model_loading import (
    DTYPES,
    convert_gguf_to_safetensors,
    load_causal_lm,
    locate_embedded_gguf,
    model_fingerprint,
    stop_token_ids,
)
from pva_dagster.study.generation.prompts import build_prompt
from pva_dagster.study.generation.residual import decoder_blocks
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.runtime import apply_offline_defaults

# The folder the pipeline converts the embedded model into (resources.language_model.EMBEDDED_MODEL_DIR).
DEFAULT_CACHE = DataLayout(Path(__file__).resolve().parents[1] / "data").models_dir / "smollm2-135m-instruct"


def random_gemma2_2b(device: str, dtype: str) -> tuple[Any, Any]:
    tokenizer = train_code_tokenizer()
    tokenizer.padding_side = "left"
    model = random_gemma2(tokenizer, GEMMA2_2B, vocab_size=GEMMA2_2B_VOCAB, dtype=DTYPES[dtype], device=device)
    return model, tokenizer


ROOT = Path(__file__).resolve().parents[1]


# Where the generation module lived, newest first, and the imports its older versions used.
MODULE_PATHS = ("pva_dagster/study/generation/batched.py", "pva_dagster/study/generation.py")
MOVED_IMPORTS = {
    "pva_dagster.study.prompts import": "pva_dagster.study.generation.prompts import",
    "pva_dagster.study.residual import": "pva_dagster.study.generation.residual import",
}


def baseline_module(ref: str) -> ModuleType:
    """The generation module (``generate`` and its settings) as it was at git ``ref``, under another name.

    Its imports of modules that have moved since are pointed at their new place (the functions it uses kept
    their behaviour: the prompt rule and the residual hooks).
    """
    for module_path in MODULE_PATHS:
        shown = subprocess.run(["git", "show", f"{ref}:{module_path}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode == 0:
            source = shown.stdout
            break
    else:
        raise ValueError(f"git ref {ref!r} has none of {MODULE_PATHS}")
    for old, new in MOVED_IMPORTS.items():
        source = source.replace(old, new)
    path = Path(tempfile.mkdtemp()) / f"generation_at_{ref.replace('/', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed(generate_fn: Any, model: Any, tokenizer: Any, prompts: list[str], layers: list[int], settings: Any):
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    stops = stop_token_ids(model, tokenizer)
    generations = [g for batch in generate_fn(model, tokenizer, prompts, layers, settings, stops) for g in batch]
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    generations.sort(key=lambda g: g.prompt_index)
    return generations, sum(g.n_new_tokens for g in generations) / seconds


def batch_size_arg(value: str) -> int | str:
    if value == "auto":
        return value
    size = int(value)
    if size < 1:
        raise argparse.ArgumentTypeError(f"a batch size is a positive integer or 'auto', got {value!r}")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--batch-size", type=batch_size_arg, nargs="+", default=None,
        help="one or more sizes, 'auto' for auto_batch_size here (default: auto)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the three paths")
    parser.add_argument(
        "--baseline-ref", default="f71fee2", help="git commit of the baseline generate; 'none': new paths only"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help="local folder or hub id (default: the embedded SmolLM2)"
    )
    source.add_argument("--gemma2-random", action="store_true", help="random-weight Gemma-2-2B architecture")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, nargs="+", choices=sorted(DTYPES),
        help="one or more; several run side by side (default: bfloat16 on cuda, else float32)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the embedded model is converted"
    )
    args = parser.parse_args(argv)
    for name in ("n_prompts", "max_new_tokens", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = args.dtype or ["bfloat16" if args.device.startswith("cuda") else "float32"]
    old = None if args.baseline_ref == "none" else baseline_module(args.baseline_ref)

    loaded: dict[str, tuple[Any, Any]] = {}
    for dtype in dtypes:
        started = time.perf_counter()
        if args.gemma2_random:
            loaded[dtype] = random_gemma2_2b(args.device, dtype)
        else:
            name = args.model or str(convert_gguf_to_safetensors(locate_embedded_gguf(), args.cache))
            loaded[dtype] = load_causal_lm(name, dtype=dtype, device=args.device)
        print(
            f"model {model_fingerprint(loaded[dtype][0])} on {args.device}, "
            f"ready in {time.perf_counter() - started:.1f} s, {torch.get_num_threads()} torch threads"
        )
    model, tokenizer = loaded[dtypes[0]]
    embedded = load_embedded()
    problems = (embedded * (args.n_prompts // len(embedded) + 1))[: args.n_prompts]
    prompts = [build_prompt(p.text, p.test_list) for p in problems]
    # Phase 1's choice (LanguageModel.settings): the longest prompt, at most max_prompt_tokens, + new tokens.
    defaults = GenerationSettings()
    prompt_budget = min(longest_prompt_tokens(tokenizer, prompts), defaults.max_prompt_tokens)
    chosen = auto_batch_size(model, prompt_budget + args.max_new_tokens)
    print(
        f"auto_batch_size here: {chosen} rows for {prompt_budget}+{args.max_new_tokens} tokens a row (the longest "
        f"prompt), {auto_batch_size(model, defaults.max_prompt_tokens + args.max_new_tokens)} for the whole prompt "
        f"budget {defaults.max_prompt_tokens}+{args.max_new_tokens}"
    )
    sizes = [chosen if size == "auto" else size for size in args.batch_size or ["auto"]]
    layers = list(range(len(decoder_blocks(model))))
    paths: dict[str, tuple[Any, Any, str]] = {}  # name -> (generate, settings, dtype)
    for dtype in dtypes:
        tag = f"{dtype} " if len(dtypes) > 1 else ""
        if old is not None:
            old_settings = old.GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=8)
            paths[f"{tag}baseline @ 8"] = (old.generate, old_settings, dtype)
        for size in dict.fromkeys([8, *sizes] if old is not None or not args.batch_size else sizes):
            settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=size, sort_by_length=True)
            paths[f"{tag}new @ {size}"] = (generate, settings, dtype)
    for warm_model, warm_tokenizer in loaded.values():
        timed(generate, warm_model, warm_tokenizer, prompts[:2], layers, GenerationSettings(max_new_tokens=4))
    rates: dict[str, list[float]] = {name: [] for name in paths}
    peak_gib: dict[str, float] = {}
    outputs: dict[str, list[Any]] = {}
    for round_ in range(args.rounds):
        for name, (generate_fn, settings, dtype) in paths.items():
            load_before = os.getloadavg()[0]
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            outputs[name], rate = timed(generate_fn, *loaded[dtype], prompts, layers, settings)
            rates[name].append(rate)
            if model.device.type == "cuda":
                peak_gib[name] = torch.cuda.max_memory_allocated() / 2**30
            print(
                f"round {round_ + 1}: {name:>14}: {rate:8.1f} new tokens/s "
                f"(1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f})",
                flush=True,
            )

    reference = next(iter(paths))  # the baseline, or new @ 8 without one
    base = outputs[reference]
    n_tokens = sum(g.n_new_tokens for g in base)
    print(f"{len(prompts)} prompts, <= {args.max_new_tokens} new tokens ({n_tokens} generated), capture = all "
          f"{len(layers)} layers, stop rule on, median of {args.rounds} round(s)")
    median = {name: statistics.median(values) for name, values in rates.items()}
    second_ratio = "new @ 8" in median and reference != "new @ 8"  # one dtype only: names carry no dtype
    for name in paths:
        pairs = list(zip(base, outputs[name], strict=True))
        same = sum(a.completion == b.completion for a, b in pairs)
        residual_diff = max(float(abs(a.residuals - b.residuals).max()) for a, b in pairs)
        print(
            f"{name:>14}: {median[name]:8.1f} new tokens/s, {median[name] / median[reference]:5.2f}x {reference}"
            + (f", {median[name] / median['new @ 8']:5.2f}x new @ 8" if second_ratio else "")
            + f"; greedy completions equal to {reference} "
            f"{same}/{len(prompts)}, max residual diff {residual_diff:.1e}"
            + (f"; peak GPU memory {peak_gib[name]:.1f} GiB" if name in peak_gib else "")
        )
    if model.device.type == "cuda":
        _free, total = torch.cuda.mem_get_info(model.device)
        print(f"{torch.cuda.get_device_name(model.device)}: {total / 2**30:.0f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
