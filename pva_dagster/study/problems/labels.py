"""A solution's two labels: MBPP's base asserts (shown in the prompt), and those with the problem's extended tests
(never shown; ``extended_tests.py``). The study's label rule picks which one decides ``passed``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pva_dagster.study.problems.extended_tests import JUDGE_LIMITS, ExtendedTests
from pva_dagster.study.problems.mbpp import Problem
from pva_dagster.study.sandbox.execution import SandboxJob, SandboxLimits, SandboxResult, run_many
from pva_dagster.study.sandbox.isolation import Isolation

# Which asserts decide a solution's label: the one list of rules (the study design's setting is typed by it).
LabelRule = Literal["base", "extended"]
BASE_LABEL, EXTENDED_LABEL = LABEL_RULES = get_args(LabelRule)
# The column of a Phase 1 record that holds each label (``passed`` holds the study's).
LABEL_COLUMNS = {BASE_LABEL: "passed_base", EXTENDED_LABEL: "passed_extended"}


@dataclass(frozen=True)
class ExtendedVerdict:
    base: SandboxResult
    # The base and extended asserts together; None where the base failed (the extended label is then False too)
    # or the problem has no extended test (the extended label is then the base one).
    extended: SandboxResult | None

    @property
    def passed_base(self) -> bool:
        return self.base.passed

    @property
    def passed_extended(self) -> bool:
        return self.base.passed if self.extended is None else self.extended.passed

    def label(self, rule: str) -> SandboxResult:
        """The result that decides the label under ``rule`` (LABEL_RULES)."""
        if rule not in LABEL_RULES:
            raise ValueError(f"unknown label rule {rule!r}; expected one of {LABEL_RULES}")
        return self.extended if rule == EXTENDED_LABEL and self.extended is not None else self.base


def judge_both(
    jobs: Sequence[SandboxJob],
    extended: Sequence[Sequence[str]],
    limits: SandboxLimits = JUDGE_LIMITS,
    max_workers: int | None = None,
    isolation: Isolation | None = None,
) -> list[ExtendedVerdict]:
    """Each job on its base asserts and, where it passes them and has extended tests (``extended[i]``), on the
    base and extended asserts together; two ``run_many`` batches."""
    base = run_many(jobs, limits, max_workers, isolation)
    again = [i for i, (result, tests) in enumerate(zip(base, extended, strict=True)) if result.passed and tests]
    second = run_many(
        [SandboxJob(jobs[i].solution, (*jobs[i].test_list, *extended[i]), jobs[i].setup_code) for i in again],
        limits, max_workers, isolation,
    )
    found = dict(zip(again, second, strict=True))
    return [ExtendedVerdict(result, found.get(i)) for i, result in enumerate(base)]


def extended_job(solution: str, problem: Problem, extended: ExtendedTests) -> SandboxJob:
    """``solution`` against the base asserts and then the extended ones, in one sandbox run."""
    return SandboxJob(solution, problem.test_list + extended.tests, problem.test_setup_code)
