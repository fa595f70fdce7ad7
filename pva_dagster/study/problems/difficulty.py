"""Phase 0: a difficulty score per problem, the cyclomatic complexity of its reference solution (radon).

Complexity is the stratification key of the splits and a covariate of the later analysis: a probe that only
tracks "this problem is hard" would look like a correctness detector, so difficulty must be balanced across
splits and reported beside every result.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd
from radon.complexity import add_inner_blocks, cc_visit

from pva_dagster.study.problems.mbpp import Problem

DIFFICULTY_COLUMNS: tuple[str, ...] = ("task_id", "cyclomatic_complexity")

# Inclusive lower and upper complexity of each bucket; None means unbounded.
DIFFICULTY_BUCKETS: dict[str, tuple[int, int | None]] = {
    "easy": (1, 1),
    "medium": (2, 3),
    "hard": (4, None),
}


def cyclomatic_complexity(code: str) -> int:
    """Largest radon complexity over the code's blocks (functions, methods, classes, closures); 1 if none.

    The maximum, not the sum: a helper function beside the main one should not make a problem look harder
    than its hardest piece. Closures are counted as blocks of their own because radon does not fold their
    branches into the enclosing function. Raises SyntaxError for code that does not parse.
    """
    with warnings.catch_warnings():  # invalid escapes such as "\d" in the data's strings
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        blocks = add_inner_blocks(cc_visit(code))
    return max((block.complexity for block in blocks), default=1)


def difficulty_frame(problems: Sequence[Problem]) -> pd.DataFrame:
    """One row a problem: ``task_id``, ``cyclomatic_complexity`` (int64), sorted by task_id."""
    rows = []
    for problem in problems:
        try:
            complexity = cyclomatic_complexity(problem.code)
        except SyntaxError as exc:
            raise ValueError(f"task {problem.task_id}: field 'code' does not parse: {exc}") from exc
        rows.append((problem.task_id, complexity))
    frame = pd.DataFrame(rows, columns=list(DIFFICULTY_COLUMNS)).astype("int64")
    return frame.sort_values("task_id", ignore_index=True)


def difficulty_bucket(cc: int) -> str:
    """The name of the ``DIFFICULTY_BUCKETS`` entry that holds complexity ``cc``."""
    for name, (low, high) in DIFFICULTY_BUCKETS.items():
        if cc >= low and (high is None or cc <= high):
            return name
    raise ValueError(f"cyclomatic complexity must be an integer >= 1, got {cc!r}")


def complexity_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """``complexity``, ``count``: how many problems have each complexity, ascending (for asset metadata)."""
    if "cyclomatic_complexity" not in frame.columns:
        raise ValueError(f"frame has no 'cyclomatic_complexity' column; columns are {list(frame.columns)}")
    counts = frame["cyclomatic_complexity"].value_counts().sort_index()
    return pd.DataFrame({"complexity": counts.index.astype("int64"), "count": counts.to_numpy(dtype="int64")})
