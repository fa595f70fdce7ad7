"""Extended tests on a real MBPP file: does the oracle agree with itself, how many tests a problem
gets, and how many deliberately wrong mutants of the references the base asserts miss and the extended
tests catch.

    .venv/bin/python bench/extended_tests.py [--mbpp PATH] [--limit N] [--seed S] [--max-tests 50]
                                             [--mutants 3] [--workers W]

Every figure comes from this one invocation. Mutants are single AST edits of a reference that passes its own
asserts (a comparison flipped, an int constant or a ``range`` bound off by one, ``+``/``-`` or ``*``/``+``
swapped, ``and``/``or`` swapped, a ``not`` dropped), chosen with a generator seeded by ``(seed, task_id)``.
Some mutants are equivalent to the reference (no test can catch them), so the catch rate is a lower bound.
"""

from __future__ import annotations

import argparse
import ast
import copy
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pva_dagster.study.problems.extended_tests import MAX_TESTS, generate
from pva_dagster.study.problems.labels import extended_job
from pva_dagster.study.problems.mbpp import Problem, load_jsonl
from pva_dagster.study.sandbox.execution import SandboxJob, SandboxLimits, probe, run_many

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"

_FLIPS: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                            ast.NotEq: ast.Eq}  # fmt: skip
MUTANT_LIMITS = SandboxLimits(wall_time_s=3.0, cpu_time_s=3)  # references take milliseconds; many mutants loop
_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult}


def _sites(tree: ast.AST) -> list[tuple[int, str]]:
    """(node index in ``ast.walk`` order, edit) for every edit that applies."""
    sites = []
    for index, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIPS:
            sites.append((index, "flip"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites += [(index, "plus1"), (index, "minus1")]
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
            sites.append((index, "swap"))
        elif isinstance(node, ast.BoolOp):
            sites.append((index, "andor"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append((index, "notdrop"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
            sites += [(index, "range+1"), (index, "range-1")]
    return sites


def _apply(tree: ast.AST, index: int, edit: str) -> ast.AST:
    tree = copy.deepcopy(tree)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    node = list(ast.walk(tree))[index]
    if edit == "flip":
        assert isinstance(node, ast.Compare)
        node.ops[0] = _FLIPS[type(node.ops[0])]()
    elif edit in ("plus1", "minus1"):
        assert isinstance(node, ast.Constant) and type(node.value) is int
        node.value = node.value + (1 if edit == "plus1" else -1)
    elif edit == "swap":
        assert isinstance(node, ast.BinOp)
        node.op = _SWAPS[type(node.op)]()
    elif edit == "andor":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif edit == "notdrop":
        assert isinstance(node, ast.UnaryOp)
        _replace(parents[node], node, node.operand)
    else:
        assert isinstance(node, ast.Call)
        bound = node.args[-1] if len(node.args) < 3 else node.args[1]
        shifted = ast.BinOp(bound, ast.Add() if edit == "range+1" else ast.Sub(), ast.Constant(1))
        node.args[node.args.index(bound)] = shifted
    return ast.fix_missing_locations(tree)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
        elif isinstance(value, list):
            parent.__dict__[name] = [new if item is old else item for item in value]


def mutants(problem: Problem, seed: int, count: int) -> list[str]:
    """Up to ``count`` distinct single-edit mutants of the reference, differing from it as source."""
    tree = ast.parse(problem.code)
    original = ast.unparse(tree)
    sites = _sites(tree)
    rng = np.random.default_rng([seed, problem.task_id])
    found: list[str] = []
    for k in rng.permutation(len(sites)):
        if len(found) == count:
            break
        source = ast.unparse(_apply(tree, *sites[int(k)]))
        if source != original and source not in found:
            found.append(source)
    return found


def timed(label: str, step: Callable[[], list]) -> list:
    start = time.perf_counter()
    out = step()
    print(f"  [{label}: {time.perf_counter() - start:.1f} s]")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mbpp", type=Path, default=MBPP, help=f"MBPP-format jsonl (default: {MBPP})")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tests", type=int, default=MAX_TESTS, help="extended tests per problem")
    parser.add_argument("--mutants", type=int, default=3, help="mutants per reference")
    parser.add_argument("--workers", type=int, default=None, help="run_many workers (default: all cores)")
    args = parser.parse_args(argv)
    if not args.mbpp.exists():
        print(f"MBPP file not found at {args.mbpp}; pass --mbpp PATH.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    problems = load_jsonl(args.mbpp)[: args.limit]
    workers = args.workers
    print(f"{len(problems)} problems from {args.mbpp}, seed {args.seed}, up to {args.max_tests} extended tests "
          f"each, isolation {probe().level.value}")  # fmt: skip
    start = time.perf_counter()

    base = timed(
        "references on their own asserts",
        lambda: run_many([SandboxJob(p.code, p.test_list, p.test_setup_code) for p in problems], max_workers=workers),
    )
    good = [p for p, r in zip(problems, base, strict=True) if r.passed]
    print(f"references passing their own asserts: {len(good)}/{len(problems)}")

    extended = timed("generation", lambda: generate(problems, args.seed, args.max_tests, workers))
    by_task = {e.task_id: e for e in extended}
    counts = [len(e.tests) for e in extended]
    q1, median, q3 = np.percentile(counts, [25, 50, 75])
    print(f"extended tests per problem: median {median:g}, quartiles {q1:g}-{q3:g}, min {min(counts)}, "
          f"max {max(counts)}, total {sum(counts)}; problems with none: {counts.count(0)}")  # fmt: skip
    dropped: Counter[str] = Counter()
    for e in extended:
        dropped.update(e.dropped)
    print(f"candidate inputs: {sum(e.candidates for e in extended)}, dropped: {dict(dropped)}; base asserts "
          f"not parsed: {sum(e.unparsed_asserts for e in extended)}")  # fmt: skip

    selfcheck = timed(
        "references on base + extended asserts",
        lambda: run_many([extended_job(p.code, p, by_task[p.task_id]) for p in good], max_workers=workers),
    )
    agree = sum(r.passed for r in selfcheck)
    print(f"oracle self-agreement: {agree}/{len(good)} passing references pass their extended tests")
    for p, r in zip(good, selfcheck, strict=True):
        if not r.passed:
            print(f"  task {p.task_id}: {r.outcome.value} {r.error_type}: {r.message[:300]}")

    pairs = [(p, m) for p in good for m in mutants(p, args.seed, args.mutants)]
    on_base = timed(
        "mutants on base asserts",
        lambda: run_many([SandboxJob(m, p.test_list, p.test_setup_code) for p, m in pairs], MUTANT_LIMITS, workers),
    )
    missed = [(p, m) for (p, m), r in zip(pairs, on_base, strict=True) if r.passed]
    on_ext = timed(
        "base-surviving mutants on extended asserts",
        lambda: run_many([extended_job(m, p, by_task[p.task_id]) for p, m in missed], MUTANT_LIMITS, workers),
    )
    caught = sum(not r.passed for r in on_ext)
    killed_base = len(pairs) - len(missed)
    print(f"mutants: {len(pairs)} of {len(good)} references; base asserts kill {killed_base} "
          f"({killed_base / max(len(pairs), 1):.1%}), miss {len(missed)}; extended tests catch {caught} of "
          f"those {len(missed)} ({caught / max(len(missed), 1):.1%}); base + extended kill "
          f"{killed_base + caught} ({(killed_base + caught) / max(len(pairs), 1):.1%})")  # fmt: skip
    print(f"median extended tests per problem: {median:g}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0 if agree == len(good) else 1


if __name__ == "__main__":
    sys.exit(main())
