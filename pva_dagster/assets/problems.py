"""Phase 0: the MBPP-format problems, the difficulty (cyclomatic complexity) of each, and the extended tests
made from each reference solution (never shown to the model; with the base asserts they decide the label)."""

import json

import dagster as dg
import pandas as pd

from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GROUP_PROBLEMS
from pva_dagster.resources import ProblemSource, Sandbox, StudyDesign
from pva_dagster.study.plots import bar_chart, markdown_table
from pva_dagster.study.problems.difficulty import complexity_distribution, difficulty_frame
from pva_dagster.study.problems.extended_tests import ExtendedTests, generate
from pva_dagster.study.problems.mbpp import frame_to_problems, problems_to_frame

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "1"


@dg.asset(group_name=GROUP_PROBLEMS, code_version=CODE_VERSION)
def mbpp_problems(context: dg.AssetExecutionContext, problem_source: ProblemSource) -> dg.Output[pd.DataFrame]:
    """Every problem of the configured source, validated (task_id, text, code, setup code, asserts)."""
    problems = problem_source.load()
    context.log.info(f"loaded {len(problems)} problems from {problem_source.describe()}")
    frame = problems_to_frame(problems)
    return dg.Output(frame, data_version=data_version(frame), metadata={
        "source": problem_source.describe(),
        "problems": len(frame),
        "task_ids": f"{frame.task_id.min()}..{frame.task_id.max()}",
        "asserts per problem (mean)": float(frame.test_list.map(len).mean()),
    })


@dg.asset(group_name=GROUP_PROBLEMS, code_version=CODE_VERSION)
def difficulty_mapping(mbpp_problems: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Phase 0: cyclomatic complexity (radon, max over blocks) of each reference solution."""
    frame = difficulty_frame(frame_to_problems(mbpp_problems))
    distribution = complexity_distribution(frame)
    return dg.Output(
        frame,
        data_version=data_version(frame),
        metadata={
            "mean complexity": float(frame.cyclomatic_complexity.mean()),
            "max complexity": int(frame.cyclomatic_complexity.max()),
            "distribution": dg.MetadataValue.md(markdown_table(distribution)),
            "histogram": dg.MetadataValue.md(
                bar_chart(
                    [str(c) for c in distribution.complexity],
                    distribution["count"].tolist(),
                    title="Cyclomatic complexity of reference solutions",
                    ylabel="problems",
                )
            ),
        },
    )


@dg.asset(group_name=GROUP_PROBLEMS, code_version=CODE_VERSION)
def extended_tests(
    context: dg.AssetExecutionContext, mbpp_problems: pd.DataFrame, problem_source: ProblemSource,
    study_design: StudyDesign, sandbox: Sandbox,
) -> dg.Output[pd.DataFrame]:
    """Per problem, up to ``extended_tests_per_problem`` asserts on new inputs (type-aware mutations of its
    asserts' arguments), their expected values computed by the reference solution in the sandbox; a source that
    ships its own (MBPP+) gives those instead."""
    problems, count = frame_to_problems(mbpp_problems), study_design.extended_tests_per_problem
    provided = problem_source.provided_tests() if count else {}
    to_make = [p for p in problems if p.task_id not in provided]
    context.log.info(
        f"extended tests: {len(provided)} problems' from {problem_source.describe()}, {len(to_make)} made here "
        f"(up to {count} each, references in the sandbox)"
    )
    by_task = {
        m.task_id: m for m in (
            generate(to_make, seed=study_design.seed, max_tests=count, max_workers=sandbox.max_workers) if count
            else [ExtendedTests(p.task_id, study_design.seed, (), 0) for p in to_make]
        )
    } | {task_id: ExtendedTests(task_id, study_design.seed, tests, len(tests)) for task_id, tests in provided.items()}
    made = [by_task[p.task_id] for p in problems]
    frame = pd.DataFrame({
        "task_id": [m.task_id for m in made], "tests": [list(m.tests) for m in made],
        "candidates": [m.candidates for m in made], "dropped": [json.dumps(m.dropped, sort_keys=True) for m in made],
        "unparsed_asserts": [m.unparsed_asserts for m in made],
    })
    sizes = frame.tests.map(len)
    return dg.Output(frame, data_version=data_version(frame), metadata={
        "tests per problem (median)": float(sizes.median()),
        "tests per problem (quartiles)": [float(sizes.quantile(0.25)), float(sizes.quantile(0.75))],
        "problems without an extended test": int((sizes == 0).sum()),
        "problems whose tests the source ships": len(provided),
        "tests (total)": int(sizes.sum()),
        "histogram": dg.MetadataValue.md(bar_chart(
            [str(n) for n in sorted(sizes.unique())], [int((sizes == n).sum()) for n in sorted(sizes.unique())],
            title="Extended tests per problem", ylabel="problems",
        )),
    })
