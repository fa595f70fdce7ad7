"""The judge rewrites asserts from several threads at once (``run_many``): its parses must not collide."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pva_dagster.study.sandbox.judging import judged_tests

SOLUTION = "\n".join(f"def f{i}(a, b):\n    return [a + b * {i} for a in range(3) if (a, b)]" for i in range(200))
TESTS = [f"assert f{i}(1, 2) == [{2 * i}, {1 + 2 * i}, {2 + 2 * i}]" for i in range(20)]


class _Finalised:
    """Garbage whose collection runs Python code, which lets another thread in mid-parse."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        sum(range(10))


@pytest.fixture
def frequent_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(5)
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("frequent_collections")
def test_judging_from_many_threads_at_once_rewrites_every_assert_as_one_thread_does() -> None:
    alone = judged_tests("", SOLUTION, TESTS)

    def judge(_: int) -> list:
        garbage = [_Finalised() for _ in range(20)]
        del garbage
        return judged_tests("", SOLUTION, TESTS)

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(judge, range(200)))
    assert all(result == alone for result in together)
