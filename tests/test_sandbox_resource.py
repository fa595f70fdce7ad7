"""The ``sandbox`` resource: where namespaces are missing, 'required' fails the run naming what is missing
and how to get it, and 'warn' runs on with a warning. Missing for real: the run is a process whose PATH
has no bwrap on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from pva_dagster.resources import Sandbox
from pva_dagster.study.sandbox.execution import probe
from pva_dagster.study.sandbox.isolation import Isolation

_RUN_BOTH = """
import json
import dagster as dg
from pva_dagster.resources import Sandbox

@dg.asset
def needs_sandbox(sandbox: Sandbox) -> str:
    return sandbox.isolation_level

out = {}
for setting in ("required", "warn"):
    result = dg.materialize([needs_sandbox], resources={"sandbox": Sandbox(isolation=setting)}, raise_on_error=False)
    failures = [event.event_specific_data.error.to_string() for event in result.all_events if event.is_failure]
    level = result.output_for_node("needs_sandbox") if result.success else None
    out[setting] = {"success": result.success, "level": level, "errors": "\\n".join(failures)}
print(json.dumps(out))
"""


def test_required_isolation_fails_the_run_and_warn_runs_on_without_bwrap(tmp_path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}  # an empty folder: no bwrap
    done = subprocess.run([sys.executable, "-c", _RUN_BOTH], capture_output=True, text=True, env=env,
                          timeout=300, check=True, cwd=tmp_path)  # fmt: skip
    out = json.loads(done.stdout.splitlines()[-1])
    required, warn = out["required"], out["warn"]
    assert not required["success"]
    assert "bubblewrap (bwrap) is not installed" in required["errors"]
    assert "apt-get install -y bubblewrap" in required["errors"]
    assert warn["success"] and warn["level"] in (Isolation.UID_DROP.value, Isolation.NONE.value)
    assert "sandbox isolation is only" in done.stderr  # the warning, in the run's log


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_required_isolation_passes_where_namespaces_work() -> None:
    with dg.build_resources({"sandbox": Sandbox(isolation="required")}) as resources:
        assert resources.sandbox.isolation_level == "namespaces"
