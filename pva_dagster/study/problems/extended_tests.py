"""Extended tests per problem by differential testing against the reference solution.

For each problem, the literal arguments of its asserts (``probes.py``) are mutated type-aware
(``input_mutation.py``) with a generator seeded by ``(seed, task_id)``, into up to ``CANDIDATES_PER_TEST *
max_tests`` distinct new inputs; the reference (setup code, then its code) evaluates them all in the sandbox,
twice, in two processes, and each result is printed tagged with a per-run random marker. An input is kept
only if both runs returned the same literal (``ast.literal_eval`` of its repr, after the sandbox's own
conversion of subclasses to their base types); it is dropped, and counted by reason, where the reference
raised, ran past ``INPUT_TIMEOUT_S`` (or the run past ``RUN_BUDGET_S``, or the whole run ended early: those
inputs are dropped, not retried), returned a non-literal, a result over ``MAX_VALUE_CHARS``, or differed
between the runs (a string set's order follows hashes that change per process). The first ``max_tests``
kept inputs, in the generator's order, become ordinary assert strings judged the way the base asserts are
(``judging.py``): ``assert f(x') == <value>``; a float anywhere in the value is compared with
``math.isclose(rel_tol=REL_TOL, abs_tol=ABS_TOL)``, a float inside a set exactly.

Determinism: the candidates are a function of the problem and the seed; which of them survive is too,
except for an input whose reference run takes about ``INPUT_TIMEOUT_S`` (machine load decides those).
The tests are for judging, never for a prompt.
"""

from __future__ import annotations

import ast
import builtins
import secrets
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pva_dagster.study.problems.input_mutation import mutate
from pva_dagster.study.problems.mbpp import Problem
from pva_dagster.study.problems.probes import Probe, literal_source, read_probes, with_arguments
from pva_dagster.study.sandbox.execution import SandboxJob, SandboxLimits, SandboxResult, run_many
from pva_dagster.study.sandbox.isolation import Isolation
from pva_dagster.study.sandbox.judging import top_level_names

MAX_TESTS = 50
CANDIDATES_PER_TEST = 3  # candidates tried per test wanted: most problems drop some inputs
REL_TOL = 1e-6  # float results: relative tolerance of math.isclose
ABS_TOL = 1e-9  # and its absolute tolerance (results near 0)
INPUT_TIMEOUT_S = 0.5  # one input's reference run, wall time
MAX_TIMEOUTS = 4  # per run: after this many inputs timed out, the rest are dropped (a slow reference)
RUN_BUDGET_S = 30.0  # all inputs of a problem; inputs not started by then are dropped
MAX_VALUE_CHARS = 1000  # a result's repr; longer ones make unreadable asserts
GENERATION_LIMITS = SandboxLimits(wall_time_s=RUN_BUDGET_S + 15, cpu_time_s=int(RUN_BUDGET_S) + 15,
                                  output_bytes=4_000_000)  # fmt: skip
JUDGE_LIMITS = SandboxLimits()  # a solution on its base and extended asserts
_MAX_INPUT_CHARS = 2000  # a candidate call's source
_ATTEMPTS_PER_CANDIDATE = 10  # mutations tried per candidate wanted (most duplicates happen on tiny inputs)
DROP_REASONS = ("raised", "timeout", "not_literal", "too_long", "unstable", "no_result")


@dataclass(frozen=True)
class Candidate:
    probe: Probe
    source: str  # the probe's expression on the new arguments


@dataclass(frozen=True)
class ExtendedTests:
    task_id: int
    seed: int
    tests: tuple[str, ...]
    candidates: int  # distinct new inputs evaluated by the reference
    dropped: dict[str, int] = field(default_factory=dict)  # by reason (DROP_REASONS), zero counts left out
    unparsed_asserts: int = 0  # base asserts that gave no probe (their inputs are never varied)


def candidates(problem: Problem, seed: int, count: int) -> tuple[list[Candidate], int]:
    """Up to ``count`` distinct new inputs (none equal to a base assert's), and the number of unparsed
    asserts. Pure: a function of the problem, ``seed`` and ``count``."""
    probes, unparsed = read_probes(problem.test_list, problem.test_setup_code, problem.code)
    probes = [probe for probe in probes if probe.mutable]
    if not probes:
        return [], unparsed
    rng = np.random.default_rng([seed, problem.task_id])
    seen = {probe.source for probe in probes}
    found: list[Candidate] = []
    for _ in range(_ATTEMPTS_PER_CANDIDATE * count):
        if len(found) == count:
            break
        probe = probes[int(rng.integers(len(probes)))]
        values = list(probe.literals)
        mutable = [i for i, fixed in enumerate(probe.fixed) if not fixed]
        chosen = mutable if rng.random() < 0.2 else [mutable[int(rng.integers(len(mutable)))]]
        for i in chosen:
            for _ in range(int(rng.integers(1, 3))):  # one or two edits
                values[i] = mutate(values[i], rng)
        source = with_arguments(probe, values)
        if source not in seen and len(source) <= _MAX_INPUT_CHARS:
            seen.add(source)
            found.append(Candidate(probe, source))
    return found, unparsed


def generate(
    problems: Sequence[Problem],
    seed: int = 0,
    max_tests: int = MAX_TESTS,
    max_workers: int | None = None,
    isolation: Isolation | None = None,
) -> list[ExtendedTests]:
    """The extended tests of every problem, in order; all reference runs go through one ``run_many``."""
    if max_tests < 1:
        raise ValueError(f"max_tests must be positive, got {max_tests}")
    planned = [candidates(problem, seed, CANDIDATES_PER_TEST * max_tests) for problem in problems]
    first = _run_references(problems, [found for found, _ in planned], max_workers, isolation)
    # The second run, in another process, repeats only what the first returned: a result that differs
    # between the two is no oracle, and an input that failed once is not paid for twice.
    again = [[c for i, c in enumerate(found) if _ok(run, i)] for (found, _), run in zip(planned, first, strict=True)]
    second = _run_references(problems, again, max_workers, isolation)
    out = []
    for problem, (found, unparsed), run1, kept, run2 in zip(problems, planned, first, again, second, strict=True):
        index = {candidate.source: i for i, candidate in enumerate(kept)}
        rerun = {i: run2[index[c.source]] for i, c in enumerate(found) if index.get(c.source, -1) in run2}
        out.append(_assemble(problem.task_id, seed, found, unparsed, [run1, rerun], max_tests))
    return out


def _ok(run: dict[int, tuple[str, str]], i: int) -> bool:
    return i in run and run[i][0] == "ok"


def _run_references(problems: Sequence[Problem], inputs: Sequence[Sequence[Candidate]], max_workers: int | None,
                    isolation: Isolation | None) -> list[dict[int, tuple[str, str]]]:  # fmt: skip
    """Per problem: input index -> (status, repr text) from one run of its reference on ``inputs``."""
    jobs, markers = [], []
    for problem, found in zip(problems, inputs, strict=True):
        if found:
            markers.append("pva-" + secrets.token_hex(8))
            jobs.append(_reference_job(problem, found, markers[-1]))
    results = iter(zip(run_many(jobs, GENERATION_LIMITS, max_workers, isolation), markers, strict=True))
    return [_results(*next(results)) if found else {} for found in inputs]


def _reference_job(problem: Problem, found: Sequence[Candidate], marker: str) -> SandboxJob:
    sources = [f"bool({c.source})" if c.probe.kind == "truth" else c.source for c in found]
    own = top_level_names(problem.code, imports=False) | top_level_names(problem.test_setup_code, imports=True)
    modules = sorted({name for c in found for name in _stdlib_names(c.source)} - own)
    harness = _HARNESS.format(sources=sources, modules=modules, marker=marker, timeout=INPUT_TIMEOUT_S,
                              budget=RUN_BUDGET_S, max_timeouts=MAX_TIMEOUTS, max_chars=MAX_VALUE_CHARS)  # fmt: skip
    return SandboxJob(problem.code + "\n\n" + harness, (), problem.test_setup_code)


def _stdlib_names(source: str) -> set[str]:
    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    return {name for name in names if name in sys.stdlib_module_names and not hasattr(builtins, name)}


# Appended to the reference: evaluates every input in the reference's namespace, each under its own timer,
# converting results as the sandbox's runner does before the judge sees them (subclasses of plain types to
# the base type, NumPy scalars to Python ones, a dict's keys to a set), and prints one tagged line each.
_HARNESS = """
def __pva_extended_harness():
    import importlib, signal, sys, time

    class Timeout(BaseException):
        pass

    def alarm(signum, frame):
        raise Timeout()

    def plain(v):
        if v is None or type(v) is bool:
            return v
        for base in (int, float, complex, str, bytes):
            if isinstance(v, base):
                return base(v) if type(v) is not base else v
        for base in (list, tuple, set, frozenset):
            if isinstance(v, base):
                return base(plain(x) for x in v)
        if isinstance(v, dict):
            return {{plain(k): plain(x) for k, x in dict.items(v)}}
        if type(v) is type({{}}.keys()):
            return set(plain(x) for x in v)
        if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
            return plain(v.item())
        return v

    scope = dict(globals())
    scope.update({{name: importlib.import_module(name) for name in {modules!r}}})
    out = sys.__stdout__
    signal.signal(signal.SIGALRM, alarm)
    start, timeouts = time.monotonic(), 0
    for i, source in enumerate({sources!r}):
        status, text = "budget", ""
        if time.monotonic() - start < {budget!r} and timeouts < {max_timeouts!r}:
            try:
                signal.setitimer(signal.ITIMER_REAL, {timeout!r})
                try:
                    text = repr(plain(eval(source, dict(scope))))
                    status = "ok" if len(text) <= {max_chars!r} else "too_long"
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Timeout:
                status, text, timeouts = "timeout", "", timeouts + 1
            except BaseException as exc:
                status, text = "raised", type(exc).__name__
        out.write("\\n{marker} %d %s %r\\n" % (i, status, text if status != "too_long" else ""))
        out.flush()


__pva_extended_harness()
del __pva_extended_harness
"""


def _results(result: SandboxResult, marker: str) -> dict[int, tuple[str, str]]:
    """Input index -> (status, repr text) from one reference run's output."""
    found = {}
    for line in result.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == marker:
            try:
                found[int(parts[1])] = (parts[2], ast.literal_eval(parts[3]))
            except (ValueError, SyntaxError):
                continue
    return found


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _assemble(task_id: int, seed: int, found: Sequence[Candidate], unparsed: int,
              runs: Sequence[dict[int, tuple[str, str]]], max_tests: int) -> ExtendedTests:  # fmt: skip
    tests: list[str] = []
    dropped: Counter[str] = Counter()
    for i, candidate in enumerate(found):
        reason, value = _verdict([run.get(i) for run in runs])
        if reason is None:
            test = _assert(candidate, value)
            reason = "too_long" if test is None else None
            if test is not None and len(tests) < max_tests:
                tests.append(test)
        if reason is not None:
            dropped[reason] += 1
    return ExtendedTests(task_id, seed, tuple(tests), len(found), dict(dropped), unparsed)


def _verdict(outcomes: Sequence[tuple[str, str] | None]) -> tuple[str | None, Any]:
    """(drop reason or None, the agreed value)."""
    values = []
    for outcome in outcomes:
        if outcome is None:
            return "no_result", None
        status, text = outcome
        if status != "ok":
            return {"budget": "timeout"}.get(status, status), None
        ok, value = _literal(text)
        if not ok:
            return "not_literal", None
        values.append(value)
    if len({literal_source(value) for value in values}) != 1:
        return "unstable", None
    return None, values[0]


def _assert(candidate: Candidate, value: Any) -> str | None:
    """The assert for ``candidate`` given the reference's ``value``; None when it would be over-long."""
    probe, source = candidate.probe, candidate.source
    if not isinstance(ast.parse(source, mode="eval").body, (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
        source = f"({source})"  # ``x if c else y == v`` would compare only the ``y``
    if probe.kind == "truth":
        test = f"assert {source}" if value else f"assert not ({source})"
    elif probe.kind == "isclose":
        if type(value) not in (int, float):
            return None
        options = f", {probe.isclose_options}" if probe.isclose_options else ""
        test = f"assert math.isclose({source}, {value!r}{options})"
    else:
        test = equality_assert(source, value)
    return test if len(test) <= MAX_VALUE_CHARS + _MAX_INPUT_CHARS else None


def equality_assert(source: str, value: Any) -> str:
    """``assert <source> == <value>``, a float anywhere in ``value`` compared within the stated tolerance."""
    if type(value) is float:
        return f"assert {_close(source, value)}"
    if _has_float(value):
        return f"assert (lambda got: {_close('got', value)})({source})"
    return f"assert {source} == {literal_source(value)}"


def _has_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if type(value) in (list, tuple):
        return any(_has_float(item) for item in value)
    if type(value) is dict:
        return any(_has_float(item) for item in value.values())
    return False  # sets (compared exactly), complex, str, int, ...


def _close(got: str, value: Any) -> str:
    """An expression true where ``got`` equals ``value``, floats within the tolerance."""
    if type(value) is float:
        return f"math.isclose({got}, {value!r}, rel_tol={REL_TOL!r}, abs_tol={ABS_TOL!r})"
    if not _has_float(value):
        return f"{got} == {literal_source(value)}"
    if type(value) is dict:
        parts = [f"type({got}) is dict", f"{got}.keys() == {literal_source(set(value))}"]
        parts += [_close(f"{got}[{literal_source(key)}]", item) for key, item in value.items()]
    else:
        parts = [f"type({got}) is {type(value).__name__}", f"len({got}) == {len(value)}"]
        parts += [_close(f"{got}[{i}]", item) for i, item in enumerate(value)]
    return "(" + " and ".join(parts) + ")"
