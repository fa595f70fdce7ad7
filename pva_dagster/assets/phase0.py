"""Phase 0: the MBPP-format problems and the difficulty (cyclomatic complexity) of each."""


import dagster as dg
import pandas as pd

from pva_dagster.constants import GROUP_PROBLEMS
from pva_dagster.resources import ProblemSource
from pva_dagster.study.plots import bar_chart, markdown_table
from pva_dagster.study.problems.difficulty import complexity_distribution, difficulty_frame
from pva_dagster.study.problems.mbpp import frame_to_problems, problems_to_frame


@dg.asset(group_name=GROUP_PROBLEMS)
def mbpp_problems(context: dg.AssetExecutionContext, problem_source: ProblemSource) -> pd.DataFrame:
    """Every problem of the configured source, validated (task_id, text, code, setup code, asserts)."""
    problems = problem_source.load()
    context.log.info(f"loaded {len(problems)} problems from {problem_source.describe()}")
    frame = problems_to_frame(problems)
    context.add_output_metadata(
        {
            "source": problem_source.describe(),
            "problems": len(frame),
            "task_ids": f"{frame.task_id.min()}..{frame.task_id.max()}",
            "asserts per problem (mean)": float(frame.test_list.map(len).mean()),
        }
    )
    return frame


@dg.asset(group_name=GROUP_PROBLEMS)
def difficulty_mapping(context: dg.AssetExecutionContext, mbpp_problems: pd.DataFrame) -> pd.DataFrame:
    """Phase 0: cyclomatic complexity (radon, max over blocks) of each reference solution."""
    frame = difficulty_frame(frame_to_problems(mbpp_problems))
    distribution = complexity_distribution(frame)
    context.add_output_metadata(
        {
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
        }
    )
    return frame
