"""Difficulty: radon cyclomatic complexity of hand-counted snippets, buckets, and the per-problem frame."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pva_dagster.study.problems.difficulty import (
    DIFFICULTY_BUCKETS,
    complexity_distribution,
    cyclomatic_complexity,
    difficulty_bucket,
    difficulty_frame,
)
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import Problem, load_local

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"

# Each expected value is counted by hand: 1 per block, +1 per if/elif/for/while/except/ternary, +1 per extra
# operand of and/or, +1 per `for` and per `if` inside a comprehension.
SNIPPETS = {
    "module code, no block": ("x = 1\nif x:\n    x = 2\n", 1),
    "straight function": ("def f(a):\n    return a + 1\n", 1),
    "if / elif / else": (
        """
        def sign(n):
            if n > 0:
                return 1
            elif n < 0:
                return -1
            else:
                return 0
        """,
        3,
    ),
    "loop with a branch": (
        """
        def count(xs):
            c = 0
            for x in xs:
                if x:
                    c += 1
            return c
        """,
        3,
    ),
    "boolean operators": ("def f(a, b, c):\n    return a and b or c\n", 3),
    "comprehension with a filter": ("def f(xs):\n    return [x for x in xs if x]\n", 3),
    "try / except and while": (
        """
        def f(x):
            try:
                while x:
                    x -= 1
            except ValueError:
                pass
            return x
        """,
        3,
    ),
    # The maximum over blocks, not the sum (1 + 4 = 5 would be the sum).
    "two functions": (
        """
        def easy():
            return 1

        def hard(a, b):
            if a:
                return 1
            if b:
                return 2
            return 3 if a == b else 4
        """,
        4,
    ),
    # The method `add` (for + if) is the hardest block.
    "class with methods": (
        """
        class Acc:
            def __init__(self):
                self.n = 0

            def add(self, xs):
                for x in xs:
                    if x > 0:
                        self.n += x
        """,
        3,
    ),
    # radon leaves a closure's branches out of its parent (1); the closure is a block of its own (3).
    "closure": (
        """
        def outer():
            def inner(x):
                if x > 0:
                    return 1
                elif x < 0:
                    return -1
                return 0
            return inner
        """,
        3,
    ),
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_cyclomatic_complexity_of_hand_counted_snippets(name: str) -> None:
    code, expected = SNIPPETS[name]
    assert cyclomatic_complexity(textwrap.dedent(code)) == expected


def test_unparsable_code_raises() -> None:
    with pytest.raises(SyntaxError):
        cyclomatic_complexity("def f(:\n    pass\n")


def test_difficulty_frame_names_the_task_with_bad_code() -> None:
    good = Problem(task_id=2, text="t", code="def f():\n    return 1\n", test_list=("assert f() == 1",))
    bad = Problem(task_id=5, text="t", code="def f(:\n", test_list=("assert f() == 1",))
    with pytest.raises(ValueError, match=r"task 5: field 'code' does not parse"):
        difficulty_frame([good, bad])


def test_difficulty_frame_on_embedded_problems() -> None:
    problems = load_embedded()
    frame = difficulty_frame(list(reversed(problems)))
    assert list(frame.columns) == ["task_id", "cyclomatic_complexity"]
    assert frame["task_id"].tolist() == sorted(p.task_id for p in problems)
    assert str(frame["cyclomatic_complexity"].dtype) == "int64"
    by_id = dict(zip(frame["task_id"], frame["cyclomatic_complexity"], strict=True))
    for problem in problems:
        assert by_id[problem.task_id] == cyclomatic_complexity(problem.code)


@pytest.mark.parametrize(("cc", "bucket"), [(1, "easy"), (2, "medium"), (3, "medium"), (4, "hard"), (16, "hard")])
def test_difficulty_bucket(cc: int, bucket: str) -> None:
    assert difficulty_bucket(cc) == bucket
    low, high = DIFFICULTY_BUCKETS[bucket]
    assert low <= cc and (high is None or cc <= high)


@pytest.mark.parametrize("cc", [0, -3])
def test_difficulty_bucket_rejects_impossible_complexity(cc: int) -> None:
    with pytest.raises(ValueError, match=str(cc)):
        difficulty_bucket(cc)


def test_complexity_distribution() -> None:
    frame = pd.DataFrame({"task_id": [1, 2, 3, 4], "cyclomatic_complexity": [3, 1, 3, 7]})
    dist = complexity_distribution(frame)
    assert dist.to_dict("list") == {"complexity": [1, 3, 7], "count": [1, 2, 1]}
    with pytest.raises(ValueError, match="no 'cyclomatic_complexity' column"):
        complexity_distribution(frame.drop(columns=["cyclomatic_complexity"]))


@pytest.mark.skipif(not MBPP.exists(), reason=f"real MBPP not found at {MBPP}")
def test_real_mbpp_difficulty() -> None:
    problems = load_local(str(MBPP))
    frame = difficulty_frame(problems)
    assert len(frame) == 974
    assert frame["cyclomatic_complexity"].min() == 1
    assert complexity_distribution(frame)["count"].sum() == 974
    # Task 1 (min_cost), counted by hand from the file: 1 + 2 comprehension fors + 4 for loops = 7.
    task_1 = json.loads(MBPP.read_text(encoding="utf-8").splitlines()[0])
    assert task_1["task_id"] == 1 and task_1["code"].count("for ") == 6
    assert frame.loc[frame["task_id"] == 1, "cyclomatic_complexity"].item() == 7
