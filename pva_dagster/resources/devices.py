"""Which device a step runs on: a lock-file pool on one machine, or the device a Dask worker was started with.

``DevicePool`` (one machine, in-process or multiprocess executor): a run tagged ``gpu=<i>`` uses ``devices[i]``;
an untagged run claims the first free device of the list. The claim is an exclusive ``flock`` on
``<lock_dir>/<device>.lock`` held for the whole step, so two runs on one machine never share a device even when
Dagster starts more runs than there are GPUs (the extra ones wait).

``WorkerDevice`` (a Dask cluster, see pva_dagster/cluster.py): each worker owns one GPU, named by ``PVA_DEVICES``
(or, as under SLURM's ``--gres=gpu:1``, the one GPU ``CUDA_VISIBLE_DEVICES`` shows) in the environment the worker
was started with; Dask's ``GPU=1`` worker resource keeps a second GPU step off it, so no lock is needed and
nothing depends on the orchestrator's disk.

Neither falls back to the CPU: a configured device torch cannot see is an error that names it.
"""

import fcntl
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from pva_dagster.constants import DASK_SCHEDULER_ENV, DEVICES_ENV, GPU_TAG, PROFILE_ENV
from pva_dagster.study.layout import DATA_DIR_ENV

CUDA_VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def check_device_names(devices: list[str]) -> list[str]:
    if not devices:
        raise ValueError("devices must name at least one device")
    bad = [d for d in devices if d != "cpu" and not d.startswith("cuda:") and d != "mps"]
    if bad:
        raise ValueError(f"unknown devices {bad}: use 'cpu', 'mps' or 'cuda:<index>'")
    return devices


def check_visible(devices: list[str], hint: str) -> None:
    """Raise when a configured GPU is not visible to torch: CPU only when the config says so."""
    import torch

    cuda = [d for d in devices if d.startswith("cuda:")]
    if cuda:
        seen = torch.cuda.device_count()
        missing = [d for d in cuda if int(d.split(":")[1]) >= seen]
        if missing:
            raise RuntimeError(f"devices {missing} are configured but torch sees {seen} CUDA device(s); {hint}")


def worker_identity() -> dict[str, str | int]:
    """Where this step runs: the Dask worker's name (``local`` outside a worker), host and process id."""
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):  # ValueError: not inside a Dask worker
        name = "local"
    return {"worker": name, "host": socket.gethostname(), "pid": os.getpid()}


class DeviceSource(dg.ConfigurableResource, ABC):
    """Hands a step the device it runs on for as long as the step holds it."""

    @abstractmethod
    def claim(self, run_tags: Mapping[str, str], log: Callable[[str], None] = print) -> AbstractContextManager[str]:
        ...


class DevicePool(DeviceSource):
    devices: list[str] = Field(
        default=["cpu"],
        description="Devices runs may use, e.g. ['cuda:0', 'cuda:1', 'cuda:2']; ['cpu'] runs on the CPU.",
    )
    lock_dir: str = Field(default="/tmp/pva_dagster_device_locks", description="Where device locks live.")
    poll_seconds: float = Field(default=5.0, description="How often a waiting run retries a claim.")

    @field_validator("devices")
    @classmethod
    def _known_kinds(cls, devices: list[str]) -> list[str]:
        return check_device_names(devices)

    def check_available(self) -> None:
        check_visible(self.devices, "set DevicePool.devices to ['cpu'] to run on the CPU")

    @contextmanager
    def claim(self, run_tags: Mapping[str, str], log: Callable[[str], None] = print) -> Iterator[str]:
        worker = worker_identity()["worker"]
        if worker != "local":  # a lock on this worker's disk says nothing about which GPU Dask gave the step
            raise RuntimeError(
                f"this step runs on Dask worker {worker!r}, which loaded the Definitions without {DASK_SCHEDULER_ENV}: "
                f"start each worker with the orchestrator's {DASK_SCHEDULER_ENV}, {PROFILE_ENV} and {DATA_DIR_ENV}"
            )
        self.check_available()
        candidates = self._candidates(run_tags)
        Path(self.lock_dir).mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            for device in candidates:
                handle = self._try_lock(device)
                if handle is not None:
                    log(f"running on {device}" + (" (after waiting for a free device)" if waited else ""))
                    try:
                        yield device
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                        os.close(handle)
                    return
            if not waited:
                log(f"all of {candidates} are busy; waiting for one to be free")
                waited = True
            time.sleep(self.poll_seconds)

    def _candidates(self, run_tags: Mapping[str, str]) -> list[str]:
        tag = run_tags.get(GPU_TAG)
        if tag is None:
            return list(self.devices)
        try:
            return [self.devices[int(tag)]]
        except (ValueError, IndexError) as error:
            raise ValueError(
                f"run tag {GPU_TAG}={tag!r} names no device of {self.devices} (use an index 0..{len(self.devices) - 1})"
            ) from error

    def _try_lock(self, device: str) -> int | None:
        path = Path(self.lock_dir) / f"{device.replace(':', '_')}.lock"
        handle = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return None
        return handle


def device_from_environment(environ: Mapping[str, str]) -> str:
    """The one device a worker was started with: ``PVA_DEVICES``, else the single GPU ``CUDA_VISIBLE_DEVICES`` shows."""
    named = environ.get(DEVICES_ENV, "").strip()
    if named:
        devices = check_device_names([d.strip() for d in named.split(",")])
        if len(devices) != 1:
            raise ValueError(
                f"{DEVICES_ENV}={named!r}: a Dask worker owns one device (start one worker per GPU, each with "
                f"--resources GPU=1)"
            )
        return devices[0]
    visible = [v for v in environ.get(CUDA_VISIBLE_ENV, "").split(",") if v.strip()]
    if len(visible) == 1:
        return "cuda:0"  # the one GPU the worker sees is its cuda:0
    raise RuntimeError(
        f"this worker was started without {DEVICES_ENV} (and {CUDA_VISIBLE_ENV}={environ.get(CUDA_VISIBLE_ENV)!r} "
        f"shows no single GPU): start it as `{DEVICES_ENV}=cuda:0 dask worker ...` ({DEVICES_ENV}=cpu for the CPU)"
    )


class WorkerDevice(DeviceSource):
    """The device of the Dask worker the step runs on, read from the worker's environment at claim time."""

    @contextmanager
    def claim(self, run_tags: Mapping[str, str], log: Callable[[str], None] = print) -> Iterator[str]:
        device = device_from_environment(os.environ)
        where = worker_identity()
        hint = f"Dask worker {where['worker']!r} on {where['host']} was started with {DEVICES_ENV}={device}"
        check_visible([device], hint)
        if GPU_TAG in run_tags:
            log(f"run tag {GPU_TAG}={run_tags[GPU_TAG]!r} ignored: on Dask the worker's own device is used")
        log(f"running on {device} of Dask worker {where['worker']!r} (host {where['host']}, pid {where['pid']})")
        yield device
