"""The pieces of an MBPP assert that extended tests vary: which expression is checked against what, and which
of its function call's arguments are literals that may be mutated.

Three forms are read (every MBPP assert is the first): ``assert PROBE == EXPECTED`` (either side),
``assert PROBE`` / ``assert not PROBE``, and ``assert math.isclose(PROBE, EXPECTED, ...)``. The probe is the
side that calls the function under test, kept whole, so that ``set(f(x)) == ...`` or ``round(f(x), 2) == ...``
is compared the same way on new inputs. The function under test is found as ``judging.py`` finds the
solution's names: a name the assert loads that is neither a builtin, a standard-library module nor the setup
code's (or, where there is none, a name the reference defines, as for MBPP task 126's ``sum``). Every other
assert is counted as unparsed and left alone.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pva_dagster.study.sandbox.judging import top_level_names

ProbeKind = Literal["eq", "truth", "isclose"]


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    source: str  # the probe expression, as in the assert
    function: str  # the name of the function under test it calls
    literals: tuple[Any, ...]  # that call's arguments, positional then keyword; None where not a literal
    fixed: tuple[bool, ...]  # True where an argument is not a literal (kept as written)
    isclose_options: str = ""  # ``rel_tol=..., abs_tol=...`` of an isclose assert

    @property
    def mutable(self) -> bool:
        return not all(self.fixed)


def read_probes(tests: Sequence[str], setup: str, reference: str) -> tuple[list[Probe], int]:
    """The probes of ``tests`` and how many tests gave none."""
    setup_names = top_level_names(setup, imports=True)
    defined = top_level_names(reference, imports=False)
    probes: list[Probe] = []
    for test in tests:
        probe = _probe(test, setup_names, defined)
        if probe is not None:
            probes.append(probe)
    return probes, len(tests) - len(probes)


def _is_real(name: str) -> bool:
    return hasattr(builtins, name) or name in sys.stdlib_module_names


def _probe(test: str, setup_names: set[str], defined: set[str]) -> Probe | None:
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    remote = {name for name in loaded - setup_names if not _is_real(name)} or (loaded - setup_names) & defined
    test_expr = tree.body[0].test
    kind: ProbeKind
    options = ""
    if isinstance(test_expr, ast.Compare) and len(test_expr.ops) == 1 and isinstance(test_expr.ops[0], ast.Eq):
        left, right = test_expr.left, test_expr.comparators[0]
        sides = [side for side in (left, right) if _target_call(side, remote) is not None]
        if len(sides) != 1:
            return None
        kind, expression = "eq", sides[0]
    elif _is_isclose(test_expr):
        assert isinstance(test_expr, ast.Call)
        kind, expression = "isclose", test_expr.args[0]
        options = ", ".join(ast.unparse(keyword) for keyword in test_expr.keywords)
        if _target_call(test_expr.args[1], remote) is not None:
            return None
    else:
        if isinstance(test_expr, ast.UnaryOp) and isinstance(test_expr.op, ast.Not):
            test_expr = test_expr.operand
        kind, expression = "truth", test_expr
    call = _target_call(expression, remote)
    if (
        call is None
        or any(isinstance(arg, ast.Starred) for arg in call.args)
        or any(keyword.arg is None for keyword in call.keywords)
    ):
        return None
    literals, fixed = [], []
    for node in [*call.args, *(keyword.value for keyword in call.keywords)]:
        try:
            literals.append(ast.literal_eval(node))
            fixed.append(False)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            literals.append(None)
            fixed.append(True)
    assert isinstance(call.func, ast.Name)
    return Probe(kind, ast.unparse(expression), call.func.id, tuple(literals), tuple(fixed), options)


def _is_isclose(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and (node.func.value.id, node.func.attr) == ("math", "isclose")
        and len(node.args) == 2
    )


def _target_call(expression: ast.expr, remote: set[str]) -> ast.Call | None:
    """The first call (outermost first) of a function in ``remote`` within ``expression``."""
    for node in ast.walk(expression):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in remote:
            return node
    return None


def with_arguments(probe: Probe, values: Sequence[Any]) -> str:
    """The probe's source with its call's literal arguments replaced by ``values`` (rendered by
    ``literal_source``; the fixed ones, whose ``values`` entries are ignored, stay as written)."""
    expression = ast.parse(probe.source, mode="eval").body
    call = _target_call(expression, {probe.function})
    assert call is not None  # it was found there when the probe was read
    slots = [*call.args, *(keyword.value for keyword in call.keywords)]
    new = [
        slot if fixed else ast.parse(literal_source(value), mode="eval").body
        for slot, fixed, value in zip(slots, probe.fixed, values, strict=True)
    ]
    call.args = new[: len(call.args)]
    for keyword, node in zip(call.keywords, new[len(call.args) :], strict=True):
        keyword.value = node
    return ast.unparse(expression)


def literal_source(value: Any) -> str:
    """``repr(value)``, except that sets are written in a fixed order (a set of strings is ordered by hashes
    that differ from one process to the next), so the same value always gives the same text."""
    kind = type(value)
    if kind in (set, frozenset):
        items = sorted(literal_source(item) for item in value)
        body = "{" + ", ".join(items) + "}" if items else ""
        return (body or "set()") if kind is set else f"frozenset({body})"
    if kind in (list, tuple):
        items = [literal_source(item) for item in value]
        if kind is list:
            return "[" + ", ".join(items) + "]"
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if kind is dict:
        return "{" + ", ".join(f"{literal_source(k)}: {literal_source(v)}" for k, v in value.items()) + "}"
    return repr(value)
