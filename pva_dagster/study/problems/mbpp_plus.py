"""MBPP+ (EvalPlus's ``evalplus/mbppplus``: 378 MBPP problems with many more tests each) as a problem source.

Its records are MBPP's sanitized ones (``task_id``, ``prompt``, ``code``, ``test_imports``, ``test_list``) plus
``test``: a program holding ``inputs = [...]`` and ``results = [...]`` literals and a loop that calls
``assertion(<entry point>(*inp), exp, atol)``. The problems become :class:`Problem` records (the prompt as
the text, the imports as setup code); the inputs and results become plain asserts, judged the way every assert
is (floats within :mod:`extended_tests`' tolerance), and serve as the problem's extended tests instead of
generated ones. A task whose program checks another way (EvalPlus's special oracles: set equality, "not
None", two admissible answers, a cross-check against the reference) gives no tests here, and is counted.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pva_dagster.study.problems.extended_tests import equality_assert
from pva_dagster.study.problems.mbpp import Problem, validate_records
from pva_dagster.study.problems.probes import literal_source

MBPP_PLUS_ID = "evalplus/mbppplus"
MBPP_PLUS_CONFIG = "default"
_STANDARD_ASSERTION = ("out", "exp", "atol")  # the plain oracle's parameters; special oracles differ


@dataclass(frozen=True)
class PlusTests:
    tests: tuple[str, ...]
    skipped: int  # input/result pairs left out (a non-finite float, an argument list that is not a list)


class _Literals(ast.NodeTransformer):
    """``inf`` and ``nan`` (imported from math in the program) as constants, so ``ast.literal_eval`` reads them."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("inf", "nan"):
            return ast.copy_location(ast.Constant(float(node.id)), node)
        return node


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(k) and _finite(v) for k, v in value.items())
    return True


def _assigned(tree: ast.Module, name: str) -> Any:
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return ast.literal_eval(_Literals().visit(node.value))
    return None


def _entry_point(tree: ast.Module) -> str | None:
    """The function the loop checks, if the program uses the plain ``assertion(f(*inp), exp, atol)`` oracle."""
    oracle = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "assertion"), None)
    if oracle is None or tuple(a.arg for a in oracle.args.args) != _STANDARD_ASSERTION:
        return None
    if "set(" in ast.unparse(oracle) or "is not None" in ast.unparse(oracle):
        return None  # set equality or "not None": not the plain comparison
    loop = next((n for n in tree.body if isinstance(n, ast.For)), None)
    call = loop.body[0].value if loop and isinstance(loop.body[0], ast.Expr) else None
    if not (isinstance(call, ast.Call) and len(call.args) == 3 and isinstance(call.args[0], ast.Call)):
        return None
    checked = call.args[0].func
    return checked.id if isinstance(checked, ast.Name) else None


def plus_tests(program: str) -> PlusTests | None:
    """The asserts of an MBPP+ ``test`` program, or None where it checks another way than plain equality."""
    tree = ast.parse(program)
    entry, inputs, results = _entry_point(tree), _assigned(tree, "inputs"), _assigned(tree, "results")
    if entry is None or inputs is None or results is None or len(inputs) != len(results):
        return None
    tests, skipped = [], 0
    for arguments, expected in zip(inputs, results, strict=True):
        if not isinstance(arguments, list) or not _finite(arguments) or not _finite(expected):
            skipped += 1
            continue
        call = f"{entry}({', '.join(literal_source(argument) for argument in arguments)})"
        tests.append(equality_assert(call, expected))
    return PlusTests(tuple(tests), skipped)


def plus_problem_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """An MBPP+ record in MBPP's ``full`` format (its prompt as the text, its imports as setup code)."""
    return {
        "task_id": int(record["task_id"]), "text": record["prompt"], "code": record["code"],
        "test_list": list(record["test_list"]), "test_setup_code": "\n".join(record.get("test_imports") or []),
        "challenge_test_list": [],
    }


def parse_mbpp_plus(records: Sequence[Mapping[str, Any]], source: str) -> tuple[list[Problem], dict[int, PlusTests]]:
    """The problems, and the tests of each task whose program this module reads (see the module docstring)."""
    problems = validate_records([plus_problem_record(r) for r in records], source)
    tests = {int(r["task_id"]): found for r in records if (found := plus_tests(r["test"])) is not None}
    return problems, tests


def load_mbpp_plus(
    dataset_id: str = MBPP_PLUS_ID, config: str = MBPP_PLUS_CONFIG, cache_dir: str | None = None
) -> tuple[list[Problem], dict[int, PlusTests]]:
    """MBPP+ from the hub (or its cache), every split concatenated."""
    import datasets  # only this loader needs it, and it is slow to import

    splits = datasets.load_dataset(dataset_id, config, cache_dir=cache_dir)
    records = [record for name in sorted(splits) for record in splits[name].to_list()]
    return parse_mbpp_plus(records, source=f"huggingface:{dataset_id}/{config}")
