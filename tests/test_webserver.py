"""The web UI starts on loopback and serves the asset graph (through its GraphQL endpoint)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "mbpp_problems", "difficulty_mapping", "problem_splits", "language_model_weights", "sae_weights",
    "phase1_0_solutions", "phase1_2_solutions", "general_text_frequency", "phase2", "top_latents",
    "phase3_classification", "phase3_steering_coefficients", "phase3_steering", "phase3_report",
    "sae_seed_replicates",
}
QUERY = "{ assetNodes { assetKey { path } groupName isPartitioned } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_web_ui_serves_the_asset_graph(tmp_path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PVA_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
         "-w", str(ROOT / "workspace.yaml")],
        # Started outside the project so its .env (DAGSTER_HOME = project root) does not apply.
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline, nodes = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                nodes = _graphql(port, QUERY)["data"]["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, f"web UI did not answer: {server.stderr.read() if server.poll() is not None else ''}"
        by_name = {node["assetKey"]["path"][-1]: node for node in nodes}
        assert EXPECTED <= set(by_name)
        assert by_name["phase1_0_solutions"]["isPartitioned"]
        assert not by_name["phase2"]["isPartitioned"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
