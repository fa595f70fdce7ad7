"""The sandbox suites from where people put projects: a copy of the project with a virtual environment of its
own under ``/tmp``, in a folder whose name has a space, run as root and as an unprivileged user.

The sandbox used to mount an empty ``/tmp`` over the host's, hiding an interpreter that lived there: a fresh
clone under ``/tmp`` failed its first Phase 1 partition. Here the layout is built for real: the copy's
``.venv`` (made by ``venv`` from a base interpreter) is what the sandbox must show inside.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pva_dagster.study.sandbox.execution import probe
from pva_dagster.study.sandbox.isolation import Isolation
from tests.test_sandbox import UNPRIVILEGED_UID, _interpreter_for

PROJECT = Path(__file__).resolve().parents[1]
SUITES = ["tests/test_sandbox.py", "tests/test_sandbox_verdict.py"]
_PROBE = "from pva_dagster.study.sandbox.execution import probe; p = probe(); print(p.level.value, p.missing)"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}"),
]


def _copy_with_venv(base_python: str, uid: int) -> tuple[Path, Path]:
    """``/tmp/pva sandbox copy XXXX/project``: the package, the tests and a fresh ``.venv``; owned by ``uid``."""
    root = Path(tempfile.mkdtemp(prefix="pva sandbox copy ", dir="/tmp"))
    root.chmod(0o755)  # the suites run some solutions as another, unprivileged user too
    project = root / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("pva_dagster", "tests"):
        shutil.copytree(PROJECT / folder, project / folder, ignore=ignore)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(project / ".venv")], check=True, timeout=120)
    (root / "home").mkdir()
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)
    return root, project


@pytest.mark.parametrize("who", ["root", "unprivileged"])
def test_sandbox_suites_pass_from_a_copy_under_tmp_with_a_space(who: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to build the layout for both users")
    uid = 0 if who == "root" else UNPRIVILEGED_UID
    base = getattr(sys, "_base_executable", sys.executable) if who == "root" else _interpreter_for(uid)
    if base is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that uid {uid} may run here")
    root, project = _copy_with_venv(base, uid)
    python = str(project / ".venv" / "bin" / "python")
    # The copy's own package first; pytest and the rest from this environment (not bound in the sandbox:
    # only the copy's .venv and the base interpreter's folders are).
    env = {"PATH": os.defpath, "HOME": str(root / "home"), "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(project), *site.getsitepackages()])}  # fmt: skip
    run = dict(cwd=project, env=env, capture_output=True, text=True, user=uid, group=uid, extra_groups=[])
    if subprocess.run([python, "-c", "import pytest"], timeout=120, check=False, **run).returncode != 0:  # type: ignore[call-overload]
        shutil.rmtree(root)
        pytest.skip(f"uid {uid} cannot read this environment's pytest ({site.getsitepackages()[0]}: a private "
                    "folder above it, as `mktemp -d` makes)")
    try:
        level = subprocess.run([python, "-c", _PROBE], timeout=120, check=True, **run)  # type: ignore[call-overload]
        assert level.stdout.split()[0] == "namespaces", level.stdout + level.stderr
        done = subprocess.run([python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--noconftest",
                               *SUITES], timeout=900, check=False, **run)  # type: ignore[call-overload]  # fmt: skip
    finally:
        shutil.rmtree(root)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output and "no namespaces here" not in output, output[-3000:]
