"""Greedy pass rate of the embedded model on (a slice of) the embedded problem set, as Phase 1.0 would label it.

    .venv/bin/python bench/embedded_pass_rate.py [--first-task 85] [--last-task 200] [--out records.parquet]

Uses the embedded profile's model (SmolLM2-135M-Instruct), study design (raw prompt, its max_new_tokens) and
Sandbox, and the pipeline's own code: ``build_prompt`` / ``format_for_model`` for the prompt,
``run_solutions`` for generation and labelling. Tasks are run one task range (the profile's task_range_size)
at a time, as Phase 1.0 batches them. Prints the pass rate overall, by cyclomatic complexity and by whether
the problem is a signature-stating one-liner. No activations are stored. Takes minutes on a CPU.
"""

from __future__ import annotations

import argparse
import ast
import tempfile
from pathlib import Path

import pandas as pd

from pva_dagster.profiles import load_profile
from pva_dagster.study.domain import GREEDY_TEMPERATURE
from pva_dagster.study.generation.labelled_generation import prompts_for
from pva_dagster.study.generation.solutions import (
    GenerationRun,
    Generator,
    SolutionGroup,
    run_solutions,
    tasks_from_problems,
)
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.difficulty import cyclomatic_complexity
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import Problem, problems_to_frame
from pva_dagster.study.problems.task_ranges import task_ranges
from pva_dagster.study.runtime import apply_offline_defaults

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data"


def states_signature(problem: Problem) -> bool:
    """The text names the reference's function with an opening parenthesis, as in "Write a function f(x)"."""
    names = [node.name for node in ast.parse(problem.code).body if isinstance(node, ast.FunctionDef)]
    return any(f"{name}(" in problem.text for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first-task", type=int, default=1)
    parser.add_argument("--last-task", type=int, default=None, help="default: the last embedded task")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the converted model is kept")
    parser.add_argument("--out", type=Path, default=None, help="keep the labelled records (Parquet) here")
    args = parser.parse_args()
    apply_offline_defaults()

    resources = load_profile("embedded").resources
    language_model, sandbox, design = resources["language_model"], resources["sandbox"], resources["study_design"]
    problems = [
        p for p in load_embedded() if args.first_task <= p.task_id <= (args.last_task or p.task_id)
    ]
    if not problems:
        raise SystemExit(f"no embedded task between {args.first_task} and {args.last_task}")

    layout = DataLayout(args.data)
    language_model.prepare(layout)
    model, tokenizer = language_model.load(layout, device="cpu")
    settings = language_model.settings(design, GREEDY_TEMPERATURE)
    generator = Generator(
        model, tokenizer, language_model.weights(layout), lambda *_: settings, sandbox.limits, sandbox.max_workers
    )
    print(f"{len(problems)} tasks, {settings.describe()}")

    table = problems_to_frame(problems)
    prompts = prompts_for(table, tokenizer, design.prompt_template, design.use_chat_template)

    with tempfile.TemporaryDirectory() as scratch:
        frames = []
        for task_range in task_ranges(max(p.task_id for p in problems), design.task_range_size):
            tasks = tasks_from_problems(table[table.task_id.between(task_range.first, task_range.last)], prompts)
            if tasks:
                group = SolutionGroup(Path(scratch) / f"records_{task_range.key}.parquet", tasks)
                frames.append(run_solutions(group, generator, GenerationRun(settings, design.seed)))
        frame = pd.concat(frames, ignore_index=True)
        if args.out:
            frame.to_parquet(args.out, index=False)

    by_id = {p.task_id: p for p in problems}
    frame = frame.assign(
        complexity=[cyclomatic_complexity(by_id[t].code) for t in frame.task_id],
        signature_one_liner=[
            cyclomatic_complexity(by_id[t].code) == 1 and states_signature(by_id[t]) for t in frame.task_id
        ],
        hit_token_cap=frame.n_new_tokens >= design.max_new_tokens,
    )
    print(f"\npassed {int(frame.passed.sum())} of {len(frame)} ({frame.passed.mean():.1%}); "
          f"{int(frame.hit_token_cap.sum())} completions reached the token cap")  # fmt: skip
    for column in ("signature_one_liner", "complexity"):
        print(frame.groupby(column).passed.agg(["sum", "count", "mean"]).round(2).to_string(), "\n")
    print("passed:", sorted(frame.task_id[frame.passed].tolist()))


if __name__ == "__main__":
    main()
