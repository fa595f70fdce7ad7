"""How the runner evaluates an assert without trusting the solution: each assert is rewritten here, in the
pipeline's own process, before the run starts (``runner.py`` then needs no parser of its own).

Every piece of an assert that starts from a name of the solution's (``f``, ``f(x)``, ``f(x)[0]``,
``Pair(1, 2).b``) becomes ``__pva_solution__(source, {names})``: the runner sends that source to the process
where the solution runs and gets back plain values. Everything around those pieces (comparisons, ``not``,
``and``/``or``, builtins, standard-library modules, the setup code's names) runs in the runner itself, with
one exception: a comparison whose every side the solution made (``f(x) == Pair(1, 2)``, ``f(x) == [Pair(1, 2),
3]``) is sent whole. Python compares such values with the solution's own ``__eq__``, and a solution could pass
it in plain Python with any class it likes, so evaluating it where the objects live trusts the solution with
nothing it did not already decide; a side that is the test's own value keeps the comparison here.

Which names are the solution's is decided from the assert and the trusted setup code, never from what the
solution imports: a builtin (``set``, ``abs``, ``isinstance``) and a standard-library module name (``math``,
``re``) are always the real ones, imported by the runner itself, whatever the solution imports under those
names or patches in its own process. One exception: a builtin or module name the solution *defines* (``def
sum``) is the solution's in an assert that names nothing else of it, which keeps MBPP task 126 (it tests a
function called ``sum``) working; next to ``f`` (``set(f(x)) == set(y)``) such names stay the real ones.
Every other name is the solution's: an assert that took a helper from the solution's own namespace (a bare
``isclose`` it imported) would trust the solution for that helper; none of MBPP's 2,922 asserts does.
"""

from __future__ import annotations

import ast
import builtins
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

SOLUTION_CALL = "__pva_solution__"  # the runner's function that evaluates a piece in the solution's process


@dataclass(frozen=True)
class JudgedTest:
    prelude: str  # imports of the real standard-library modules the assert uses, run in the runner first
    body: str  # the assert, its solution pieces replaced by ``__pva_solution__(...)`` calls


# CPython 3.11 builds an AST with one recursion count per interpreter, so two threads parsing at once can fail
# with "SystemError: AST constructor recursion depth mismatch" (a garbage collection mid-parse lets the other
# thread in); ``run_many`` judges from several threads, so its parses take turns.
_PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse(source)``, one thread at a time."""
    with _PARSING:
        return ast.parse(source)


def judged_tests(setup: str, solution: str, tests: Sequence[str]) -> list[JudgedTest]:
    """Each of ``tests`` as the runner runs it; a test that does not parse is left as it is (the runner then
    reports its SyntaxError, as running it would)."""
    setup_names = top_level_names(setup, imports=True)
    defined = top_level_names(solution, imports=False)
    return [_judged(test, setup_names, defined) for test in tests]


def top_level_names(source: str, imports: bool) -> set[str]:
    """The names ``source`` binds at its top level (inside top-level ``if``/``for``/``with``/``try`` too) by
    ``def``, ``class`` and assignment, and by ``import`` if ``imports``."""
    try:
        tree = parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()  # the solution's process reports the error when it runs it
    found: set[str] = set()
    statements: list[ast.AST] = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.ExceptHandler)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements.extend(getattr(node, field, []))
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and imports:
            found |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    return found


def _is_real(name: str) -> bool:
    """A builtin or a standard-library module: the runner has the real one."""
    return hasattr(builtins, name) or name in sys.stdlib_module_names


def _bound_in(node: ast.AST) -> set[str]:
    """Names that ``node`` binds itself (comprehension targets, lambda parameters, ``:=``)."""
    bound = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    return bound | {n.arg for n in ast.walk(node) if isinstance(n, ast.arg)}


def _judged(test: str, setup_names: set[str], defined: set[str]) -> JudgedTest:
    try:
        tree = parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return JudgedTest("", test)
    local = _bound_in(tree)
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = loaded - local - setup_names  # the setup's names are the setup's, run in the runner
    remote = {name for name in free if not _is_real(name)}
    if not remote:  # the function under test has a builtin's name (MBPP task 126: ``sum``)
        remote = free & defined
    modules = sorted(name for name in free - remote if name in sys.stdlib_module_names and not hasattr(builtins, name))
    body = ast.fix_missing_locations(_ToSolution(remote, local).visit(tree))
    return JudgedTest("\n".join(f"import {name}" for name in modules), ast.unparse(body))


class _ToSolution(ast.NodeTransformer):
    """Replaces each piece that starts from a name in ``remote`` by ``__pva_solution__(source, {name: value of
    each name the piece takes from the assert's own comprehensions and lambdas})``."""

    def __init__(self, remote: set[str], local: set[str]) -> None:
        self.remote, self.local = remote, local

    def _is_piece(self, node: ast.AST) -> bool:
        """``node`` starts from a name of the solution's (``f``, ``f(x)``, ``f(x)[0]``, ``Pair(1, 2).b``)."""
        root = node
        while isinstance(root, (ast.Call, ast.Attribute, ast.Subscript)):
            root = root.func if isinstance(root, ast.Call) else root.value
        return isinstance(node, ast.expr) and isinstance(root, ast.Name) and root.id in self.remote

    def _made_by_solution(self, node: ast.AST) -> bool:
        """A piece, or a list, tuple, set or dict display of pieces and literals holding at least one piece."""
        if self._is_piece(node):
            return True
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            items = [*node.keys, *node.values] if isinstance(node, ast.Dict) else list(node.elts)
            present = [item for item in items if item is not None]
            if len(present) < len(items):  # ``{**mapping}``
                return False
            made = [self._made_by_solution(item) for item in present]
            return any(made) and all(m or isinstance(i, ast.Constant) for m, i in zip(made, present, strict=True))
        return False

    def _whole_comparison(self, node: ast.AST) -> bool:
        """A comparison of values the solution made on every side (``f(x) == Pair(1, 2)``): Python compares them
        with the solution's own methods, and so does the judge, by evaluating it where they live. A side that is
        the test's own value (a literal, a builtin's result) keeps the comparison in the judge."""
        return isinstance(node, ast.Compare) and all(
            self._made_by_solution(side) for side in (node.left, *node.comparators)
        )

    def visit(self, node: ast.AST) -> ast.AST:
        if self._is_piece(node) or self._whole_comparison(node):
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            names = sorted((used & self.local) - _bound_in(node))  # bound outside the piece, used inside it
            bound = ast.Dict([ast.Constant(n) for n in names], [ast.Name(n, ast.Load()) for n in names])
            call = ast.Call(ast.Name(SOLUTION_CALL, ast.Load()), [ast.Constant(ast.unparse(node)), bound], [])
            return ast.copy_location(call, node)
        return self.generic_visit(node)
