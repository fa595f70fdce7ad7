"""MBPP+ as a problem source: its test programs read into plain asserts, its datasets cache (the rehearsal's
stand-in) loaded offline, and the references passing the tests it ships, in the real sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from pva_dagster.rehearsal.dataset_standins import PLUS_TEST_PROGRAM, build_mbpp_plus_standin, plus_test_program
from pva_dagster.study.problems.embedded import embedded_records
from pva_dagster.study.problems.mbpp_plus import load_mbpp_plus, plus_tests
from pva_dagster.study.sandbox.execution import SandboxJob, run_many

# An MBPP+ program as EvalPlus writes them (tools/mbpp/to_original_fmt.py): the plain oracle, inputs, results.
AREA = PLUS_TEST_PROGRAM.format(
    inputs=[[1.0, 2.0], [0.5, 0.1], [1e308, 10.0], [3, 4]], results=[2.0, 0.05, "inf", 12],
    entry_point="area",
).replace("'inf'", "inf")
# EvalPlus's special oracle for unordered results: compares sets, not values.
SET_ORACLE = """\
def assertion(out, exp, atol):
    out = set(out)
    exp = set(exp)
    assert out == exp

inputs = [[[1, 2, 2]]]
results = [[1, 2]]
for i, (inp, exp) in enumerate(zip(inputs, results)):
    assertion(unique(*inp), exp, 0)
"""


def test_a_plus_program_becomes_plain_asserts_with_float_tolerance():
    found = plus_tests(AREA)
    assert found is not None and found.skipped == 1  # the infinite result has no assert
    assert found.tests[0].startswith("assert math.isclose(area(1.0, 2.0), 2.0, rel_tol=")
    assert found.tests[-1] == "assert area(3, 4) == 12"
    assert len(found.tests) == 3


def test_special_oracles_and_programs_without_results_give_no_tests():
    assert plus_tests(SET_ORACLE) is None
    assert plus_tests(AREA.replace("results = ", "expected = ")) is None
    assert plus_tests("") is None


@pytest.fixture(scope="module")
def plus_cache(tmp_path_factory) -> tuple[Path, list[dict]]:
    records = embedded_records()[:12]
    hf_home = tmp_path_factory.mktemp("hf_home")
    build_mbpp_plus_standin(hf_home, records)
    return hf_home / "datasets", records


def test_the_standin_cache_loads_offline_as_mbpp_plus(plus_cache):
    cache, records = plus_cache
    problems, tests = load_mbpp_plus(cache_dir=str(cache))
    assert [p.task_id for p in problems] == [r["task_id"] for r in records]
    assert [p.text for p in problems] == [r["text"] for r in records]
    readable = [r["task_id"] for r in records if plus_test_program(r["test_list"])]
    assert sorted(tests) == readable and all(len(tests[t].tests) == 3 for t in readable)


def test_references_pass_the_shipped_tests_and_a_wrong_solution_does_not(plus_cache):
    cache, _ = plus_cache
    problems, tests = load_mbpp_plus(cache_dir=str(cache))
    chosen = [p for p in problems if p.task_id in tests]
    right = run_many([SandboxJob(p.code, tests[p.task_id].tests, p.test_setup_code) for p in chosen])
    assert all(result.passed for result in right), [r.message for r in right if not r.passed]
    first = chosen[0]
    wrong = first.code + f"\n\ndef {first.test_list[0].split('(')[0].split()[-1]}(*args):\n    return None\n"
    assert not run_many([SandboxJob(wrong, tests[first.task_id].tests, first.test_setup_code)])[0].passed
