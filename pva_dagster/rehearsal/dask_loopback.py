"""A real Dask cluster on 127.0.0.1 for the tests and bench/scaleout.py: a `dask scheduler` process and one
`dask worker --resources GPU=1 --nthreads 1` process per device, each started with its own ``PVA_DEVICES``,
as README "Running on a cluster" starts them. Workers run without a nanny, so SIGKILL ends a worker for good."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project folder: workers start there
DASK = str(Path(sys.executable).parent / "dask")
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalDaskCluster:
    workdir: Path
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str, device: str) -> None:
        env = {**os.environ, "PVA_DEVICES": device, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        log = (self.workdir / f"worker-{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [DASK, "worker", self.address, "--name", name, "--nthreads", "1", "--resources", "GPU=1", "--no-nanny",
             "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(self.workdir / name)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_for(self, names: set[str], timeout: float = START_TIMEOUT_S) -> None:
        """Block until exactly ``names`` are the scheduler's workers."""
        from distributed import Client

        with Client(self.address, timeout=timeout) as client:
            deadline = time.monotonic() + timeout
            while {w["name"] for w in client.scheduler_info()["workers"].values()} != names:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers {names} not up; logs in {self.workdir}")
                time.sleep(0.2)

    def busy_workers(self) -> set[str]:
        """Names of the workers running a task now."""
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            workers = client.scheduler_info()["workers"]
            return {workers[address]["name"] for address, tasks in client.processing().items() if tasks}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.workers.pop(name)
        os.killpg(process.pid, sig)
        process.wait(30)

    def stop(self) -> None:
        for name in list(self.workers):
            self.kill(name, signal.SIGTERM)
        os.killpg(self.scheduler.pid, signal.SIGTERM)
        try:
            self.scheduler.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.scheduler.pid, signal.SIGKILL)
            self.scheduler.wait(10)


@contextmanager
def local_dask_cluster(workdir: Path, devices: dict[str, str]) -> Iterator[LocalDaskCluster]:
    """A scheduler and one worker per ``{name: device}``, all stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=ROOT, stdout=(workdir / "scheduler.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    cluster = LocalDaskCluster(workdir, f"tcp://127.0.0.1:{port}", scheduler)
    try:
        for name, device in devices.items():
            cluster.start_worker(name, device)
        cluster.wait_for(set(devices))
        yield cluster
    finally:
        cluster.stop()
