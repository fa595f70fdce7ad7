"""The embedded problem set: MBPP-format problems written for this project, shipped as package data.

Why not a slice of MBPP: the embedded model (SmolLM2-135M) solves about 5 % of real MBPP, which leaves the
"correct" class nearly empty and the study meaningless. So about half of these problems are one-liners whose
text states the function name and signature (so do the simple loops and branches among tasks 85-200, up to
complexity 3), and the rest climb through loops and branches to nested logic, giving cyclomatic complexities
from 1 to 10 for the stratified splits. Problems and code are original, none taken from MBPP.

The records live in ``data/embedded_problems.jsonl`` (one MBPP record a line, task_ids 1..n in order); this
module reads them and validates them into ``Problem`` objects (``load_embedded``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from pva_dagster.study.problems.mbpp import Problem, ProblemDataError, parse_jsonl, validate_records

EMBEDDED_PACKAGE = "pva_dagster.study.problems"
EMBEDDED_RESOURCE = "data/embedded_problems.jsonl"
EMBEDDED_SOURCE = f"{EMBEDDED_PACKAGE}/{EMBEDDED_RESOURCE}"
# The set's largest task ID, which fixes the embedded profile's task-range partitions without reading the file
# when the Definitions are built (a test checks it against the file).
EMBEDDED_MAX_TASK_ID = 200


@cache
def _embedded_text() -> str:
    resource = resources.files(EMBEDDED_PACKAGE).joinpath(EMBEDDED_RESOURCE)
    if not resource.is_file():
        raise ProblemDataError(f"{EMBEDDED_SOURCE}: not installed with the package (package data missing)")
    return resource.read_text(encoding="utf-8")


def embedded_records() -> list[dict[str, Any]]:
    """The raw MBPP records in file order, parsed afresh on each call so callers may change them freely.

    Not validated here (``load_embedded`` does that); a line that is not JSON raises ProblemDataError.
    """
    return parse_jsonl(_embedded_text(), EMBEDDED_SOURCE)


def load_embedded() -> list[Problem]:
    """The hand-written set shipped as package data, validated."""
    return validate_records(embedded_records(), source=EMBEDDED_SOURCE)
