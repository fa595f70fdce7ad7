"""The judge's version: what a label depends on besides the solution and its tests.

A hash of the code that decides a verdict: the runner and its transport (how values cross from the solution's
process and how the asserts are evaluated), the assert rewriting, and how the base and extended labels combine.
A change to any of them changes every label's fingerprint, so stored labels are recomputed from the stored
completions instead of being resumed (``generation/solutions.py``).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_SANDBOX = Path(__file__).resolve().parent
JUDGE_SOURCES = tuple(
    _SANDBOX / name for name in ("runner.py", "transport.py", "judging.py", "../problems/labels.py")
)


@cache
def judge_version() -> str:
    """16 hex digits of the SHA-256 of :data:`JUDGE_SOURCES` (their bytes, in order)."""
    digest = hashlib.sha256()
    for path in JUDGE_SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
