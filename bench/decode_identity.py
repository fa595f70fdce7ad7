"""Greedy identity of the decode loop on every embedded problem, prompted as Phase 1 prompts them.

    .venv/bin/python bench/decode_identity.py [--ref main] [--batch-size 16] [--max-new-tokens 128]
        [--out-dir /tmp/decode_identity] [--cache DIR]

Greedy completions of the 200 embedded problems (Phase 1.0's settings: function-end stop, residuals of every
layer) from three runs, each saved batch by batch as JSON lines under --out-dir and reused if there (so an
interrupted comparison resumes):

- ``ref``: ``generate`` at git ``--ref`` (``model.generate``), batches of --batch-size sorted by length;
- ``new``: ``generate`` now (``decoding.decode``), the same batches;
- ``new_alone``: ``generate`` now, one prompt at a time.

The saved runs of ``new`` are named by a hash of the decode modules' source, so an edit starts them afresh.

It prints, for ``new`` against each of the others (and ``ref`` against ``new_alone``), how many completions are
equal, and for each that is not, where the tokens part and the two texts from there on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from generation import DEFAULT_CACHE, ROOT, baseline_module

from pva_dagster.study.generation import batched, decoding
from pva_dagster.study.generation.labelled_generation import prompts_for
from pva_dagster.study.generation.model_loading import (
    convert_gguf_to_safetensors,
    load_causal_lm,
    locate_embedded_gguf,
    stop_token_ids,
)
from pva_dagster.study.generation.prompts import DEFAULT_TEMPLATE
from pva_dagster.study.generation.residual import decoder_blocks
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import problems_to_frame
from pva_dagster.study.runtime import apply_offline_defaults


def run(module: Any, model: Any, tokenizer: Any, prompts: list[str], batch_size: int, max_new: int, path: Path):
    """Completions (prompt order) of ``module.generate``; batches saved by an earlier run are read, not redone.

    Each batch is appended to ``path`` as it finishes, so an interrupted run resumes (the batches are formed
    from the prompts alone: those left re-form the batches not yet saved).
    """
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {row["index"] for row in rows}
    todo = [i for i in range(len(prompts)) if i not in done]
    settings = module.GenerationSettings(max_new_tokens=max_new, batch_size=batch_size, sort_by_length=True)
    layers = list(range(len(decoder_blocks(model))))
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    if todo:
        batches = module.generate(
            model, tokenizer, [prompts[i] for i in todo], layers, settings, stop_token_ids(model, tokenizer)
        )
        for batch in batches:
            new = [{"index": todo[g.prompt_index], "completion": g.completion, "n_new_tokens": g.n_new_tokens}
                   for g in batch]
            with path.open("a") as out:
                out.write("".join(json.dumps(row) + "\n" for row in new))
            rows += new
            print(f"  {path.stem}: {len(rows)}/{len(prompts)} prompts, {time.perf_counter() - started:.0f} s",
                  flush=True)
    return sorted(rows, key=lambda row: row["index"])


def compare(name: str, a: list[dict[str, Any]], b: list[dict[str, Any]], tokenizer: Any, task_ids: list[int]) -> int:
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x["completion"] != y["completion"]]
    print(f"{name}: {len(a) - len(differ)}/{len(a)} greedy completions equal")
    for i in differ:
        x, y = (tokenizer(row["completion"])["input_ids"] for row in (a[i], b[i]))
        same = next((k for k, (s, t) in enumerate(zip(x, y, strict=False)) if s != t), min(len(x), len(y)))
        print(
            f"  task {task_ids[i]}: tokens part at new token {same} ({a[i]['n_new_tokens']} vs "
            f"{b[i]['n_new_tokens']} new tokens); from there: {tokenizer.decode(x[same:])[:60]!r} vs "
            f"{tokenizer.decode(y[same:])[:60]!r}"
        )
    return len(differ)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git ref whose generate is compared (default: main)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/decode_identity"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the embedded model is converted")
    args = parser.parse_args(argv)
    apply_offline_defaults()
    model, tokenizer = load_causal_lm(str(convert_gguf_to_safetensors(locate_embedded_gguf(), args.cache)))
    frame = problems_to_frame(load_embedded())
    by_task = prompts_for(frame, tokenizer, DEFAULT_TEMPLATE, use_chat_template=False)
    task_ids, prompts = list(by_task), list(by_task.values())
    common = (model, tokenizer, prompts)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    size, max_new, out = args.batch_size, args.max_new_tokens, args.out_dir
    # Saved runs of the working tree are named by its decode code, so an edited loop never reuses old ones.
    code = hashlib.sha1(b"".join(Path(m.__file__).read_bytes() for m in (batched, decoding))).hexdigest()[:10]
    ref = run(baseline_module(commit), *common, size, max_new, out / f"ref_{commit}_b{size}_{max_new}.jsonl")
    new = run(batched, *common, size, max_new, out / f"new_{code}_b{size}_{max_new}.jsonl")
    alone = run(batched, *common, 1, max_new, out / f"new_{code}_b1_{max_new}.jsonl")
    print(f"{len(prompts)} embedded problems, greedy, <= {max_new} new tokens, batches of {size}; ref {commit}")
    compare(f"new @ {args.batch_size} vs {args.ref} @ {args.batch_size}", new, ref, tokenizer, task_ids)
    compare(f"new @ {args.batch_size} vs new one at a time", new, alone, tokenizer, task_ids)
    compare(f"{args.ref} @ {args.batch_size} vs new one at a time", ref, alone, tokenizer, task_ids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
