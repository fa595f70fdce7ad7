"""How the runner evaluates an assert without trusting the solution: each assert is rewritten here, in the
pipeline's own process, before the run starts (``runner.py`` then needs no parser of its own).

Every piece of an assert that starts from a name of the solution's (``f``, ``f(x)``, ``f(x)[0]``,
``Pair(1, 2).b``) becomes ``__pva_solution__(source, {names})``: the runner sends that source to the process
where the solution runs and gets back plain values. Everything around those pieces (comparisons, ``not``,
``and``/``or``, builtins, standard-library calls, the setup code's names) runs in the runner itself.

Names resolve as in one module, except that nothing the solution does can replace the real helpers next to
the function under test: its imports of standard-library names are imported again in the runner (the real
``math.isclose``, not one it patched), and a builtin or standard-library name it defines again (``def set``,
``abs = ...``) is the solution's only in an assert that names nothing else of it. That exception keeps MBPP
task 126 (which tests a function called ``sum``) working; next to ``f`` (``set(f(x)) == set(y)``) the
names stay the real ones.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Sequence
from dataclasses import dataclass

SOLUTION_CALL = "__pva_solution__"  # the runner's function that evaluates a piece in the solution's process

# name -> (module, attribute or None) for an import, None for a definition (def, class, assignment)
Bindings = dict[str, tuple[str, str | None] | None]


@dataclass(frozen=True)
class JudgedTest:
    prelude: str  # imports of the real standard-library names the assert uses, run in the runner first
    body: str  # the assert, its solution pieces replaced by ``__pva_solution__(...)`` calls


def judged_tests(setup: str, solution: str, tests: Sequence[str]) -> list[JudgedTest]:
    """Each of ``tests`` as the runner runs it; a test that does not parse is left as it is (the runner then
    reports its SyntaxError, as running it would)."""
    setup_names = set(top_level_bindings(setup))
    bindings = top_level_bindings(solution)
    return [_judged(test, setup_names, bindings) for test in tests]


def top_level_bindings(source: str) -> Bindings:
    """The names ``source`` binds at its top level (inside top-level ``if``/``for``/``with``/``try`` too)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}  # the solution's process reports the error when it runs it
    found: Bindings = {}
    statements: list[ast.AST] = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            statements.extend(node.body)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                found[alias.asname or top] = (alias.name if alias.asname else top, None)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = None
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update({n.id: None for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)})
    return found


def _owner(name: str, bindings: Bindings) -> str:
    """Who a free name of an assert belongs to: ``solution``; ``shadow`` (a builtin or standard-library name
    the solution defines again); ``import`` (the solution's import of a standard-library name); ``runner``."""
    real = hasattr(builtins, name) or name in sys.stdlib_module_names
    if name not in bindings:
        return "runner" if real else "solution"  # not bound at the top level: made some other way, or missing
    bound = bindings[name]
    if bound is None:
        return "shadow" if real else "solution"
    return "import" if bound[0].split(".")[0] in sys.stdlib_module_names else "solution"


def _judged(test: str, setup_names: set[str], bindings: Bindings) -> JudgedTest:
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return JudgedTest("", test)
    local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    local |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    owners = {name: _owner(name, bindings) for name in sorted(loaded - local - setup_names)}
    remote = {name for name, owner in owners.items() if owner == "solution"}
    if not remote:  # the function under test has a builtin's name (MBPP task 126: ``sum``)
        remote = {name for name, owner in owners.items() if owner == "shadow"}
    imports = []
    for name, owner in owners.items():
        bound = bindings.get(name)
        if owner == "import" and bound is not None:  # the solution's import, done again: the real one
            module, attribute = bound
            imports.append(f"from {module} import {attribute} as {name}" if attribute else f"import {module} as {name}")
        elif name not in remote and name in sys.stdlib_module_names and not hasattr(builtins, name):
            imports.append(f"import {name}")
    body = ast.fix_missing_locations(_ToSolution(remote, local).visit(tree))
    return JudgedTest("\n".join(imports), ast.unparse(body))


class _ToSolution(ast.NodeTransformer):
    """Replaces each piece that starts from a name in ``remote`` by ``__pva_solution__(source, {names the
    piece uses from the assert's own comprehensions and lambdas: name})``."""

    def __init__(self, remote: set[str], local: set[str]) -> None:
        self.remote, self.local = remote, local

    def visit(self, node: ast.AST) -> ast.AST:
        root = node
        while isinstance(root, (ast.Call, ast.Attribute, ast.Subscript)):
            root = root.func if isinstance(root, ast.Call) else root.value
        if isinstance(node, ast.expr) and isinstance(root, ast.Name) and root.id in self.remote:
            names = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in self.local})
            bound = ast.Dict([ast.Constant(n) for n in names], [ast.Name(n, ast.Load()) for n in names])
            call = ast.Call(ast.Name(SOLUTION_CALL, ast.Load()), [ast.Constant(ast.unparse(node)), bound], [])
            return ast.copy_location(call, node)
        return self.generic_visit(node)
