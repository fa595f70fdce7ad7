"""Sandbox throughput on the real MBPP reference solutions, through ``run_many``: without isolation vs with
the isolation this machine allows, or (``--baseline-ref REF``) this checkout's judge against the one at a git
commit, both at the isolation this machine allows.

    .venv/bin/python bench/sandbox.py [--limit N] [--workers W] [--rounds R] [--baseline-ref REF]

Both timings come from the same invocation, in alternating rounds (the best round of each counts), so a
neighbour's load on a shared machine hits both alike. With ``--baseline-ref`` each round runs in a fresh
interpreter importing either that commit's package (a temporary git worktree) or this one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pva_dagster.study.sandbox.execution import SandboxJob, SandboxResult, fork_containment, probe, run_many
from pva_dagster.study.sandbox.isolation import Isolation

ROOT = Path(__file__).resolve().parents[1]
MBPP = ROOT.parent / "shared/mbpp/mbpp.jsonl"


def load_jobs(path: Path, limit: int | None) -> list[SandboxJob]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit is not None else rows
    return [SandboxJob(r["code"], tuple(r["test_list"]), r["test_setup_code"]) for r in rows]


def timed(jobs: list[SandboxJob], workers: int | None, isolation: Isolation) -> tuple[float, list[SandboxResult]]:
    start = time.perf_counter()
    results = run_many(jobs, max_workers=workers, isolation=isolation)
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N problems only (default: all)")
    parser.add_argument("--workers", type=int, default=None, help="run_many workers (default: all cores)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating old/new rounds (default: 2)")
    parser.add_argument("--mbpp", type=Path, default=MBPP, help=f"MBPP jsonl (default: {MBPP})")
    parser.add_argument("--baseline-ref", default=None, help="compare with the judge at this git commit")
    parser.add_argument("--time-once", action="store_true", help=argparse.SUPPRESS)  # one round, as JSON
    args = parser.parse_args(argv)
    if not args.mbpp.exists():
        print(f"MBPP file not found at {args.mbpp}; pass --mbpp PATH.", file=sys.stderr)
        return 2
    for name in ("limit", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    jobs = load_jobs(args.mbpp, args.limit)
    if args.time_once:
        seconds, results = timed(jobs, args.workers, probe().level)
        print(json.dumps({"seconds": seconds, "outcomes": [r.outcome.value for r in results]}))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.baseline_ref:
        return against_commit(args, len(jobs))
    new = probe().level
    print(f"{len(jobs)} reference solutions, {os.cpu_count()} cores")
    print(f"old: isolation none, fork containment {fork_containment(Isolation.NONE)}")
    print(f"new: isolation {new.value}, fork containment {fork_containment(new)}")

    best = {Isolation.NONE: float("inf"), new: float("inf")}
    outcomes = {}
    for _ in range(args.rounds):
        for level in (Isolation.NONE, new):
            seconds, results = timed(jobs, args.workers, level)
            best[level] = min(best[level], seconds)
            outcomes[level] = results
    for label, level in (("old", Isolation.NONE), ("new", new)):
        passed = sum(r.passed for r in outcomes[level])
        print(f"{label}: {len(jobs) / best[level]:8.1f} solutions/s (best of {args.rounds}: "
              f"{best[level]:.1f} s), passed {passed}/{len(jobs)}")  # fmt: skip
    print(f"new/old throughput: {best[Isolation.NONE] / best[new]:.2f}")
    if [r.outcome for r in outcomes[Isolation.NONE]] != [r.outcome for r in outcomes[new]]:
        print("outcomes differ between the old and the new sandbox", file=sys.stderr)
        return 1
    return 0



def _round(args: argparse.Namespace, package_root: Path) -> dict:
    """One timed round in a fresh interpreter that imports ``pva_dagster`` from ``package_root``."""
    command = [sys.executable, __file__, "--time-once", "--mbpp", str(args.mbpp)]
    command += [f"--{name}={getattr(args, name)}" for name in ("limit", "workers") if getattr(args, name)]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def against_commit(args: argparse.Namespace, n_jobs: int) -> int:
    """This checkout's judge against the one at ``args.baseline_ref``, alternating rounds."""
    with tempfile.TemporaryDirectory(prefix="pva-baseline-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline_ref],
                       check=True, capture_output=True)  # fmt: skip
        try:
            best, outcomes = {"baseline": float("inf"), "current": float("inf")}, {}
            for _ in range(args.rounds):
                for label, root in (("baseline", tree), ("current", ROOT)):
                    result = _round(args, root)
                    best[label] = min(best[label], result["seconds"])
                    outcomes[label] = result["outcomes"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"{n_jobs} reference solutions, {os.cpu_count()} cores, isolation {probe().level.value}")
    for label in best:
        passed = outcomes[label].count("passed")
        print(f"{label} ({args.baseline_ref if label == 'baseline' else 'this checkout'}): "
              f"{n_jobs / best[label]:8.1f} solutions/s (best of {args.rounds}: {best[label]:.1f} s), "
              f"passed {passed}/{n_jobs}")  # fmt: skip
    print(f"current/baseline throughput: {best['baseline'] / best['current']:.2f}")
    differ = sum(a != b for a, b in zip(outcomes["baseline"], outcomes["current"], strict=True))
    print(f"outcomes that differ: {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
