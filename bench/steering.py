"""Steering units batched together against one unit at a time, on the embedded model, in one run.

A problem group of the embedded study (``--problems`` embedded problems) steered as the sweep steers it: an
unsteered baseline and, per coefficient, a target and a control latent's vector (here random directions at
two layers: the cost does not depend on which). Each way runs from empty unit files; the completions of the two
ways are compared, and the wall times printed with their ratio.

    .venv/bin/python bench/steering.py [--problems 8] [--coefficients 2] [--dtype auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()

import torch  # noqa: E402

from pva_dagster.profiles import load_profile  # noqa: E402
from pva_dagster.study.domain import DEFAULT_SEED, GREEDY_TEMPERATURE  # noqa: E402
from pva_dagster.study.generation.prompts import build_prompt  # noqa: E402
from pva_dagster.study.generation.solutions import Task  # noqa: E402
from pva_dagster.study.layout import DataLayout, default_data_root  # noqa: E402
from pva_dagster.study.problems.embedded import load_embedded  # noqa: E402
from pva_dagster.study.steering.sweep import CONTROL, TARGET, SteeringUnit, baseline_unit, run_units  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8, help="problems in the group (default 8)")
    parser.add_argument("--coefficients", type=int, default=2, help="coefficients swept (default 2)")
    parser.add_argument("--dtype", default="auto", help="the model's dtype (default auto)")
    parser.add_argument("--data", type=Path, default=default_data_root(), help="where the converted model is kept")
    args = parser.parse_args(argv)

    profile = load_profile("embedded")
    language_model, design, sandbox = (
        profile.resources["language_model"].model_copy(update={"dtype": args.dtype}), profile.design,
        profile.resources["sandbox"],
    )
    layout = DataLayout(args.data)
    language_model.prepare(layout)
    model, tokenizer = language_model.load(layout, "cpu")
    generator = language_model.generator(model, tokenizer, layout, design, sandbox.limits, sandbox.max_workers)
    problems = load_embedded()[60 : 60 + args.problems]  # loops and branches: what steering would try to fix
    tasks = [Task(p.task_id, build_prompt(p.text, list(p.test_list)), p.test_list) for p in problems]
    rows = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    jobs = [(baseline_unit("hyperparams", "incorrect"), tasks, None)]
    for i in range(args.coefficients):
        scale = 5.0 * (i + 1)
        jobs += [
            (SteeringUnit("hyperparams", float(i + 1), scale, "correct", TARGET, 12, 1, "incorrect"), tasks, rows[0]),
            (SteeringUnit("hyperparams", float(i + 1), scale, "correct", CONTROL, 18, 2, "incorrect"), tasks, rows[1]),
        ]
    batch = generator.settings(GREEDY_TEMPERATURE, 1, [t.prompt for t in tasks]).batch_size
    print(f"{len(jobs)} units x {len(tasks)} problems = {len(jobs) * len(tasks)} rows; model in "
          f"{next(model.parameters()).dtype}; batches of {batch}")

    def timed(run) -> tuple[float, dict]:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            results = dict(run(Path(out)))
            return time.perf_counter() - started, {u: r[["completion", "passed"]] for u, r in results.items()}

    def quiet(_line: str) -> None:
        pass

    together, batched = timed(lambda out: run_units(jobs, generator, out_dir=out, seed=DEFAULT_SEED, log=quiet))
    alone, single = timed(lambda out: [
        result for job in jobs for result in run_units([job], generator, out_dir=out, seed=DEFAULT_SEED, log=quiet)
    ])
    rows = len(jobs) * len(tasks)
    same = sum(int((batched[u].completion == single[u].completion).sum()) for u in batched)
    labels = sum(int((batched[u].passed == single[u].passed).sum()) for u in batched)
    print(f"one unit at a time: {alone:.1f} s; batched together: {together:.1f} s; speed-up {alone / together:.2f}x")
    # Greedy tokens depend on the batch a row shares in bfloat16 (not in float32): other batches, other rows.
    print(f"rows with the same completion both ways: {same} of {rows}; the same label: {labels} of {rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
