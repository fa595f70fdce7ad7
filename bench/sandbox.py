"""Sandbox throughput on the real MBPP reference solutions: without isolation (the sandbox before issue 10)
vs with the isolation this machine allows, both through ``run_many``.

    .venv/bin/python bench/sandbox.py [--limit N] [--workers W] [--rounds R]

Both timings come from the same invocation, in alternating rounds (the best round of each counts), so a
neighbour's load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from pva_dagster.study.sandbox.execution import SandboxJob, SandboxResult, fork_containment, probe, run_many
from pva_dagster.study.sandbox.isolation import Isolation

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"


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
    args = parser.parse_args(argv)
    if not args.mbpp.exists():
        print(f"MBPP file not found at {args.mbpp}; pass --mbpp PATH.", file=sys.stderr)
        return 2
    for name in ("limit", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    jobs = load_jobs(args.mbpp, args.limit)
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


if __name__ == "__main__":
    sys.exit(main())
