"""The package's shape: the science knows nothing of Dagster, imports run down the layers only, no cycle, and
building the Definitions reads no data."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import load_profile
from pva_dagster.study.problems.embedded import EMBEDDED_MAX_TASK_ID, load_embedded

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pva_dagster"
# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("pva_dagster.study",),  # the science: plain Python, no Dagster
    ("pva_dagster.constants", "pva_dagster.partitions"),
    ("pva_dagster.resources",),
    ("pva_dagster.profiles", "pva_dagster.cluster", "pva_dagster.jobs"),
    ("pva_dagster.assets",),
    ("pva_dagster.definitions",),
    ("pva_dagster.rehearsal", "pva_dagster.cli"),  # user-facing commands and the stand-ins they build
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every pva_dagster module ``path`` imports, at module level or inside a function (a lazy import is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from package import module`
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_every_import_runs_down_the_layers(graph):
    upward = sorted(
        f"{module} -> {target}" for module, targets in graph.items() if module != "pva_dagster"
        for target in targets if _layer(target) > _layer(module)
    )
    assert upward == []


def test_the_science_imports_no_dagster():
    dagster_users = sorted(
        _module_name(path) for path in (PACKAGE / "study").rglob("*.py")
        if any(name == "dagster" or name.startswith(("dagster.", "dagster_")) for name in _imports(path))
    )
    assert dagster_users == []


def test_no_import_cycle(graph):
    """Depth-first search for a back edge; the cycle found is named."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module, []) is None


def test_two_profiles_give_two_definitions_in_one_process():
    """Partitions come from each profile's design, not from whichever profile was imported first."""
    embedded, gemma = load_profile("embedded"), load_profile("gemma")
    small = embedded.with_design(max_task_id=40, task_range_size=10, temperatures=[0.6])

    def keys(profile, asset):
        return sorted(build_definitions(profile, environ={}).get_assets_def(asset).partitions_def.get_partition_keys())

    assert keys(embedded, "phase1_0_solutions") == ["0000-0100", "0101-0201"]
    assert len(keys(gemma, "phase1_0_solutions")) == 20  # 974 tasks, 50 a range
    assert keys(small, "phase1_0_solutions") == ["0000-0009", "0010-0019", "0020-0029", "0030-0039", "0040-0049"]
    sampled = keys(small, "phase1_2_solutions")
    assert len(sampled) == 5 and all("0.6" in key.split("|") for key in sampled)
    assert keys(embedded, "phase1_0_solutions") == ["0000-0100", "0101-0201"], "building another changed nothing"
    # The executor comes from the profile too: one process for the embedded profile's one CPU device.
    assert build_definitions(embedded, environ={}).executor is dg.in_process_executor
    assert build_definitions(gemma, environ={}).executor is None  # Dagster's multiprocess default


def test_the_embedded_partitions_cover_the_embedded_problems():
    """The profile fixes its task ranges without reading the problem file; the file must agree."""
    assert max(problem.task_id for problem in load_embedded()) == EMBEDDED_MAX_TASK_ID


# Importing the Definitions and building them for both profiles, with every file the process opens audited.
NO_DATA_READ = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
from pva_dagster.definitions import build_definitions, defs
from pva_dagster.profiles import load_profile
defs()
build_definitions(load_profile("gemma"), environ={})
data = [p for p in opened if p.endswith((".jsonl", ".parquet", ".npz", ".safetensors", ".gguf"))]
print("\\n".join(data))
"""


def test_building_the_definitions_reads_no_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", NO_DATA_READ], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PVA_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == ""


def test_every_declared_output_name_is_an_asset():
    """The names the layout and the IO manager share (study/outputs.py) are the assets' keys: they cannot drift."""
    from pva_dagster.study import outputs

    declared = {value for name, value in vars(outputs).items() if name.isupper() and isinstance(value, str)}
    tables = {t for name, value in vars(outputs).items() if name.endswith("_TABLES") for t in value}
    table_names = tables | {outputs.SCORES_TABLE, outputs.TOP_TABLE}
    keys = build_definitions(load_profile("embedded"), environ={}).resolve_asset_graph().get_all_asset_keys()
    asset_names = {key.to_user_string() for key in keys}
    assert declared - table_names <= asset_names
    assert {"phase1_0_solutions", "phase2", "phase3_report"} <= declared


MAX_MODULE_LINES = 400
MAX_PARAMETERS = 7
# Functions allowed more parameters, each with the reason. Dagster's asset and op functions are not listed:
# their parameters are their declared inputs and resources, which Dagster reads from the signature.
MANY_PARAMETERS = {
    "pva_dagster.study.generation.batched.generate": "the decode loop's inputs, each a per-call tensor or list",
    "pva_dagster.study.generation.batched._generate_batch": "one batch of generate's inputs, sliced per batch",
    "pva_dagster.study.generation.decoding.decode": "the decode loop itself: the model, one batch's tensors, hooks",
    "pva_dagster.study.analysis.sae.train_topk_sae": "SAELens's training settings, each a keyword with a default",
    "pva_dagster.study.analysis.corpus.sample_position_residuals": "the general-text pass: keywords with defaults",
    "pva_dagster.study.generation.labelled_generation.generate_and_label": "one partition's inputs, each distinct",
    "pva_dagster.study.evaluation.report.render_report": "one argument per upstream asset's tables, each distinct",
}
DAGSTER_DECORATORS = ("asset", "op", "graph_asset", "multi_asset", "asset_check", "graph")
ISSUE_NUMBER = re.compile(r"\b[Ii]ssues?\s*#?\d+")  # ("#1565" names a latent: not matched)
PRODUCT = [PACKAGE, ROOT / "tests", ROOT / "bench", ROOT / "docs", ROOT / "cluster"]


def _is_dagster_function(node: ast.FunctionDef) -> bool:
    names = {ast.unparse(d.func if isinstance(d, ast.Call) else d).split(".")[-1] for d in node.decorator_list}
    return bool(names & set(DAGSTER_DECORATORS))


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines()))
            > MAX_MODULE_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_takes_more_parameters_than_the_limit_outside_the_stated_list():
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not _is_dagster_function(node):
                arguments = node.args
                names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
                if len([n for n in names if n not in ("self", "cls")]) > MAX_PARAMETERS:
                    found.add(f"{_module_name(path)}.{node.name}")
    assert found <= set(MANY_PARAMETERS), f"over {MAX_PARAMETERS} parameters: {sorted(found - set(MANY_PARAMETERS))}"
    assert set(MANY_PARAMETERS) <= found, f"listed but no longer long: {sorted(set(MANY_PARAMETERS) - found)}"


def test_the_product_names_no_issue_number():
    files = [p for folder in PRODUCT for p in folder.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".sh")]
    files += [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if ISSUE_NUMBER.search(line)]  # fmt: skip
    assert not hits, f"issue numbers in the product: {hits}"


def test_assets_take_only_public_names_of_the_science():
    """Asset modules wire: they call the science's public functions, never reach into its private helpers."""
    private = []
    for path in (PACKAGE / "assets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pva_dagster.study"):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private
