"""Sandbox throughput on the real MBPP reference solutions: one at a time vs ``run_many``.

    .venv/bin/python bench/sandbox.py [--limit N] [--workers W]

Both timings come from the same invocation, so the printed speed-up compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pva_dagster.study.sandbox import SandboxJob, fork_containment, run_many, run_solution

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"


def load_jobs(path: Path, limit: int | None) -> list[SandboxJob]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit is not None else rows
    return [SandboxJob(r["code"], tuple(r["test_list"]), r["test_setup_code"]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N problems only (default: all)")
    parser.add_argument("--workers", type=int, default=None, help="run_many workers (default: all cores)")
    parser.add_argument("--mbpp", type=Path, default=MBPP, help=f"MBPP jsonl (default: {MBPP})")
    args = parser.parse_args(argv)
    if not args.mbpp.exists():
        print(f"MBPP file not found at {args.mbpp}; pass --mbpp PATH.", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be positive, got {args.limit}")
    jobs = load_jobs(args.mbpp, args.limit)
    print(f"{len(jobs)} reference solutions, {os.cpu_count()} cores, fork containment: {fork_containment()}")

    start = time.perf_counter()
    serial = [run_solution(job.solution, job.test_list, job.setup_code) for job in jobs]
    serial_s = time.perf_counter() - start
    start = time.perf_counter()
    parallel = run_many(jobs, max_workers=args.workers)
    parallel_s = time.perf_counter() - start

    if [r.outcome for r in serial] != [r.outcome for r in parallel]:
        print("outcomes differ between the serial and the parallel run", file=sys.stderr)
        return 1
    passed = sum(r.passed for r in parallel)
    print(f"passed {passed}/{len(jobs)}")
    print(f"one at a time: {len(jobs) / serial_s:8.1f} solutions/s ({serial_s:.1f} s)")
    print(f"run_many:      {len(jobs) / parallel_s:8.1f} solutions/s ({parallel_s:.1f} s)")
    print(f"speed-up:      {serial_s / parallel_s:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
