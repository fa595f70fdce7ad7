"""MBPP-format problems: one validated record type, the loaders that produce it, and its table form.

Every source (the embedded set, a local JSONL/Parquet file, the Hugging Face hub) goes through
``validate_records``, so a bad record fails here, naming the source, the task and the field, instead of
surfacing later as a puzzling sandbox failure or a silently smaller split.
"""

from __future__ import annotations

import ast
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_FIELDS: tuple[str, ...] = ("task_id", "text", "code", "test_list")
FRAME_COLUMNS: tuple[str, ...] = (
    "task_id",
    "text",
    "code",
    "test_setup_code",
    "test_list",
    "challenge_test_list",
)
HF_MBPP_ID = "google-research-datasets/mbpp"


@dataclass(frozen=True)
class Problem:
    task_id: int
    text: str
    code: str
    test_list: tuple[str, ...]
    test_setup_code: str = ""
    challenge_test_list: tuple[str, ...] = ()


class ProblemDataError(ValueError):
    """A problem record is malformed; the message names the source, the task and the field."""


def _parses(source: str) -> str | None:
    """The syntax error message for ``source``, or None when it parses."""
    try:
        # Data code such as MBPP's uses "\d" in plain strings; the warnings are about the data, not us.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
            ast.parse(source)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    return None


def _string_list(value: Any, field: str, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ProblemDataError(f"{where}: field {field!r} must be a list of str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ProblemDataError(f"{where}: field {field!r} is empty")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ProblemDataError(
                f"{where}: field {field!r} item {index} must be str, got {type(item).__name__}"
            )
        error = _parses(item)
        if error:
            raise ProblemDataError(f"{where}: field {field!r} item {index} does not parse: {error}")
    return tuple(value)


def _one_problem(record: Any, index: int, source: str, line: int | None = None) -> Problem:
    """Record ``index`` of ``source``; errors name its ``line`` instead where it came from a JSONL file."""
    place = f"line {line}" if line is not None else f"record #{index}"
    if not isinstance(record, Mapping):
        raise ProblemDataError(f"{source}: {place} is a {type(record).__name__}, not a mapping")
    if "task_id" not in record:
        raise ProblemDataError(f"{source}: {place}: missing field 'task_id'")
    task_id = record["task_id"]
    # numpy integers come from Parquet and pandas; bool is an int subclass but never a task id.
    if isinstance(task_id, bool) or not isinstance(task_id, (int, np.integer)):
        raise ProblemDataError(
            f"{source}: {place}: field 'task_id' must be an int, got {task_id!r}"
        )
    where = f"{source}: {'' if line is None else place + ': '}task {int(task_id)}"
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise ProblemDataError(f"{where}: missing field(s) {missing}")
    for field in ("text", "code", "test_setup_code"):
        value = record.get(field, "")
        if not isinstance(value, str):
            raise ProblemDataError(f"{where}: field {field!r} must be str, got {type(value).__name__}")
    if not record["text"].strip():
        raise ProblemDataError(f"{where}: field 'text' is empty")
    for field in ("code", "test_setup_code"):
        error = _parses(record.get(field, ""))
        if error:
            raise ProblemDataError(f"{where}: field {field!r} does not parse: {error}")
    return Problem(
        task_id=int(task_id),
        text=record["text"],
        code=record["code"],
        test_list=_string_list(record["test_list"], "test_list", where, allow_empty=False),
        test_setup_code=record.get("test_setup_code", ""),
        challenge_test_list=_string_list(
            record.get("challenge_test_list", []), "challenge_test_list", where, allow_empty=True
        ),
    )


def validate_records(
    records: Iterable[Mapping[str, Any]], source: str, lines: Sequence[int] | None = None
) -> list[Problem]:
    """Check every record and return the problems sorted by task_id; raise ProblemDataError on the first bad one.

    ``lines``: each record's line in a JSONL file, named in the error instead of the record's index."""
    problems: list[Problem] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        line = lines[index] if lines is not None else None
        problem = _one_problem(record, index, source, line)
        if problem.task_id in seen:
            at = f"line {line}: " if line is not None else ""
            raise ProblemDataError(f"{source}: {at}task {problem.task_id}: duplicate field 'task_id'")
        seen.add(problem.task_id)
        problems.append(problem)
    if not problems:
        raise ProblemDataError(f"{source}: no problems")
    return sorted(problems, key=lambda problem: problem.task_id)


def parse_jsonl_lines(text: str, source: str) -> list[tuple[int, Any]]:
    """The line number and JSON value of each non-blank line of ``text``; a line that is not JSON is named with
    ``source``."""
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((line_number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ProblemDataError(f"{source}: line {line_number} is not JSON: {exc}") from exc
    return records


def parse_jsonl(text: str, source: str) -> list[Any]:
    """The JSON value of each non-blank line of ``text`` (``parse_jsonl_lines`` without the line numbers)."""
    return [record for _, record in parse_jsonl_lines(text, source)]


def load_jsonl(path: str | Path) -> list[Problem]:
    """One JSON object a line (the MBPP release format); an error names the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProblemDataError(f"{path}: cannot read it: {exc}") from exc
    numbered = parse_jsonl_lines(text, str(path))
    return validate_records([record for _, record in numbered], str(path), lines=[n for n, _ in numbered])


def load_parquet(path: str | Path) -> list[Problem]:
    """A Parquet table in the ``problems_to_frame`` layout."""
    return frame_to_problems(pd.read_parquet(path), source=str(path))


def load_huggingface(
    dataset_id: str = HF_MBPP_ID, config: str = "full", cache_dir: str | None = None
) -> list[Problem]:
    """Every split of a hub data set concatenated (MBPP "full": 974 problems). Needs the hub or its cache.

    ``dataset_id`` may also be a local folder in the hub layout (a README declaring the config's files).
    """
    import datasets  # only this loader needs it, and it is slow to import

    splits = datasets.load_dataset(dataset_id, config, cache_dir=cache_dir)
    records = [record for name in sorted(splits) for record in splits[name].to_list()]
    return validate_records(records, source=f"huggingface:{dataset_id}/{config}")


def load_local(path: str | Path) -> list[Problem]:
    """A local file, read as JSONL or Parquet by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return load_jsonl(path)
    if suffix == ".parquet":
        return load_parquet(path)
    raise ValueError(f"cannot tell the format of {str(path)!r}: expected a .jsonl or .parquet file")


def problems_to_frame(problems: Sequence[Problem]) -> pd.DataFrame:
    """One row a problem; test lists as Python lists of str so Parquet stores them as list<string>."""
    rows = [
        {
            "task_id": problem.task_id,
            "text": problem.text,
            "code": problem.code,
            "test_setup_code": problem.test_setup_code,
            "test_list": list(problem.test_list),
            "challenge_test_list": list(problem.challenge_test_list),
        }
        for problem in problems
    ]
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS)).astype({"task_id": "int64"})


def _as_list(value: Any) -> Any:
    # pyarrow hands list columns back as numpy object arrays; anything else is left for validation to judge.
    return value.tolist() if isinstance(value, np.ndarray) else value


def frame_to_problems(frame: pd.DataFrame, source: str = "DataFrame") -> list[Problem]:
    """Inverse of ``problems_to_frame``, also for a frame read back from Parquet."""
    missing = [column for column in REQUIRED_FIELDS if column not in frame.columns]
    if missing:
        raise ProblemDataError(f"{source}: missing column(s) {missing}")
    records = []
    for row in frame.to_dict(orient="records"):
        for field in ("test_list", "challenge_test_list"):
            if field in row:
                row[field] = _as_list(row[field])
        records.append(row)
    return validate_records(records, source=source)
