"""Phase 0: the MBPP-format problems and the difficulty (cyclomatic complexity) of each."""


import dagster as dg
import pandas as pd

from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GROUP_PROBLEMS
from pva_dagster.resources import ProblemSource
from pva_dagster.study.plots import bar_chart, markdown_table
from pva_dagster.study.problems.difficulty import complexity_distribution, difficulty_frame
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
