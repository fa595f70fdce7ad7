"""Extended tests: type-aware mutation, assert parsing, the reference as oracle in the real sandbox
(failures dropped, determinism), and extended asserts that catch what the base asserts miss."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.extended_tests import candidates, generate
from pva_dagster.study.problems.input_mutation import mutate
from pva_dagster.study.problems.labels import ExtendedVerdict, judge_both
from pva_dagster.study.problems.mbpp import Problem, load_jsonl
from pva_dagster.study.problems.probes import literal_source, read_probes
from pva_dagster.study.sandbox.execution import SandboxJob, run_solution

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"


def judge_extended(solution: str, problem, extended) -> ExtendedVerdict:
    """``solution`` on the base asserts and, where it passes them, the base and extended ones."""
    job = SandboxJob(solution, problem.test_list, problem.test_setup_code)
    return judge_both([job], [extended.tests], max_workers=1)[0]


def problem(code: str, *tests: str, task_id: int = 1, setup: str = "") -> Problem:
    return Problem(task_id, "a test problem", code, tuple(tests), setup)


def fits(new: Any, old: Any) -> bool:
    """``new`` has the type shape of ``old``: the same type, a record tuple the same fields, and every element
    of a container the shape of one of ``old``'s elements (a container may grow, shrink or empty)."""
    if type(new) is not type(old):
        return False
    if type(old) is tuple and len({type(item) for item in old}) > 1:
        return len(new) == len(old) and all(fits(n, o) for n, o in zip(new, old, strict=True))
    if type(old) is dict:
        return all(any(fits(k, j) for j in old) and any(fits(v, u) for u in old.values()) for k, v in new.items())
    if type(old) in (list, tuple, set, frozenset):
        return all(any(fits(item, o) for o in old) for item in new)
    return True


VALUES = [7, -2.5, "hello world", [1, 2, 3], (4, 5, 6), ("ann", 31), {"a": 1, "b": 2}, {1, 2, 3},
          [[1, 2], [3, 4, 5]], [("x", 1.5), ("y", 2.5)], True, b"abc"]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ + str(i) for i, v in enumerate(VALUES)])
def test_each_type_mutates_to_a_different_value_of_the_same_shape(value: Any) -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        new = mutate(value, rng)
        assert repr(new) != repr(value)
        assert fits(new, value), (value, new)


def test_containers_grow_shrink_and_change_nested_values() -> None:
    rng = np.random.default_rng(1)
    value = [[1, 2], [3, 4, 5]]
    seen = [mutate(value, rng) for _ in range(200)]
    assert {len(new) > 2 for new in seen} == {True, False}  # grown and not
    assert any(len(new) == 1 for new in seen) and any(new == [] for new in seen)  # shrunk, emptied
    assert any(len(new) == 2 and new[0] != value[0] and new[1] == value[1] for new in seen)  # changed inside
    ints = [mutate(5, rng) for _ in range(100)]
    assert {6, 4, 0, -5} <= set(ints)


def test_asserts_are_read_with_their_comparison_and_unreadable_ones_are_counted() -> None:
    tests = ["assert set(f([1, 2], 3)) == set([2, 1])", "assert 5 == f([0], n=2)", "assert not g('a')",
             "assert math.isclose(h(2.0), 1.0, rel_tol=0.01)", "assert True", "assert f(*[1, 2]) == 3"]  # fmt: skip
    probes, unparsed = read_probes(tests, "", "def f(x, n): pass\ndef g(s): pass\ndef h(x): pass\n")
    assert unparsed == 2
    assert [(p.kind, p.source, p.function, p.literals) for p in probes] == [
        ("eq", "set(f([1, 2], 3))", "f", ([1, 2], 3)),
        ("eq", "f([0], n=2)", "f", ([0], 2)),
        ("truth", "g('a')", "g", ("a",)),
        ("isclose", "h(2.0)", "h", (2.0,)),
    ]
    assert probes[3].isclose_options == "rel_tol=0.01"
    # A setup name is an argument kept as written; only the literal one varies.
    (probe,), _ = read_probes(["assert f(tree, 2) == 1"], "tree = [1, [2]]", "def f(t, k): pass\n")
    assert probe.fixed == (True, False)
    assert literal_source({"b", "a", "c"}) == "{'a', 'b', 'c'}"


def test_candidates_are_seeded_and_never_a_base_input() -> None:
    p = problem("def f(xs, k):\n    return sorted(xs)[:k]\n", "assert f([3, 1, 2], 2) == [1, 2]",
                "assert f([5, 4], 1) == [4]")  # fmt: skip
    first, _ = candidates(p, seed=3, count=40)
    again, _ = candidates(p, seed=3, count=40)
    other, _ = candidates(p, seed=4, count=40)
    assert [c.source for c in first] == [c.source for c in again]
    assert [c.source for c in first] != [c.source for c in other]
    assert len({c.source for c in first}) == 40
    assert not {c.source for c in first} & {"f([3, 1, 2], 2)", "f([5, 4], 1)"}


def test_generation_is_deterministic_with_a_seed() -> None:
    p = load_embedded()[4]
    first, again, other = generate([p], seed=0) + generate([p], seed=0) + generate([p], seed=1)
    assert first.tests and first.tests == again.tests
    assert first.tests != other.tests


def arguments(test: str) -> list[Any]:
    call = next(n for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Call) and ast.unparse(n.func) == "f")
    return [ast.literal_eval(arg) for arg in call.args]


def test_inputs_the_reference_fails_on_are_dropped() -> None:
    code = (
        "def f(n):\n"
        "    if n < 0:\n        raise ValueError(n)\n"
        "    if n % 2:\n        return object()\n"
        "    while n > 20:\n        pass\n"
        "    return n // 2\n"
    )
    p = problem(code, "assert f(4) == 2", "assert f(10) == 5", "assert f(16) == 8")
    (extended,) = generate([p], max_tests=50)
    assert extended.tests
    for test in extended.tests:
        (n,) = arguments(test)
        assert 0 <= n <= 20 and n % 2 == 0, test
        assert test == f"assert f({n}) == {n // 2}"
    assert extended.dropped["raised"] and extended.dropped["not_literal"] and extended.dropped["timeout"]
    assert len(extended.tests) + sum(extended.dropped.values()) == extended.candidates


def test_results_that_differ_between_runs_are_dropped() -> None:
    p = problem("import random\ndef f(n):\n    return n + random.randrange(10**12)\n", "assert f(1) == 5")
    (extended,) = generate([p], max_tests=10)
    assert extended.tests == () and extended.dropped == {"unstable": extended.candidates}


@pytest.mark.parametrize("index", [0, 4, 19, 84, 88, 102])  # ints, lists, an average, floats, strings
def test_embedded_references_pass_their_extended_tests(index: int) -> None:
    p = load_embedded()[index]
    (extended,) = generate([p])
    assert len(extended.tests) >= 10
    verdict = judge_extended(p.code, p, extended)
    assert verdict.passed_base and verdict.passed_extended, verdict.extended


def test_a_wrong_solution_that_passes_the_base_asserts_is_caught() -> None:
    p = load_embedded()[0]  # add_numbers
    table = []
    for test in p.test_list:  # ``assert add_numbers(1, 2) == 3``: the base asserts as a lookup table
        compare = ast.parse(test).body[0].test  # type: ignore[attr-defined]
        table.append(f"({', '.join(map(ast.unparse, compare.left.args))}): {ast.unparse(compare.comparators[0])}")
    wrong = f"def add_numbers(a, b):\n    return {{{', '.join(table)}}}[(a, b)]\n"
    (extended,) = generate([p])
    verdict = judge_extended(wrong, p, extended)
    assert verdict.passed_base and not verdict.passed_extended
    assert judge_extended("def add_numbers(a, b):\n    return None\n", p, extended).extended is None


def test_floats_are_compared_with_a_tolerance_inside_containers_too() -> None:
    p = problem("def f(xs):\n    return [x / 3 for x in xs]\n", "assert f([1.5, 3.0]) == [0.5, 1.0]")
    (extended,) = generate([p], max_tests=20)
    with_floats = [t for t in extended.tests if t != "assert f([]) == []"]
    assert with_floats and all("lambda got" in t and "math.isclose" in t for t in with_floats)
    close = "def f(xs):\n    return [x / 3 * (1 + 1e-9) for x in xs]\n"
    off = "def f(xs):\n    return [x / 3 + 0.01 for x in xs]\n"
    as_tuple = "def f(xs):\n    return tuple(x / 3 for x in xs)\n"
    assert judge_extended(p.code, p, extended).passed_extended
    assert run_solution(close, extended.tests).passed  # (the base assert compares exactly: not judged here)
    assert not run_solution(off, extended.tests).passed
    assert not run_solution(as_tuple, extended.tests).passed


@pytest.mark.skipif(not MBPP.exists(), reason=f"real MBPP not found at {MBPP}")
def test_real_mbpp_references_pass_their_extended_tests() -> None:
    problems = load_jsonl(MBPP)[:8]
    for p, extended in zip(problems, generate(problems), strict=True):
        assert extended.tests, p.task_id
        verdict = judge_extended(p.code, p, extended)
        assert verdict.passed_extended, (p.task_id, verdict.extended)
