"""Mapping runs onto devices: one run per GPU, claimed with a file lock, never a silent CPU fallback.

A run tagged ``gpu=<i>`` uses ``devices[i]``; an untagged run claims the first free device of the list. The
claim is an exclusive ``flock`` on ``<lock_dir>/<device>.lock`` held for the whole run, so two runs on one
machine never share a device even when Dagster starts more runs than there are GPUs (the extra ones wait).
"""


import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from pva_dagster.constants import GPU_TAG


class DevicePool(dg.ConfigurableResource):
    devices: list[str] = Field(
        default=["cpu"],
        description="Devices runs may use, e.g. ['cuda:0', 'cuda:1', 'cuda:2']; ['cpu'] runs on the CPU.",
    )
    lock_dir: str = Field(default="/tmp/pva_dagster_device_locks", description="Where device locks live.")
    poll_seconds: float = Field(default=5.0, description="How often a waiting run retries a claim.")

    @field_validator("devices")
    @classmethod
    def _known_kinds(cls, devices: list[str]) -> list[str]:
        if not devices:
            raise ValueError("devices must name at least one device")
        bad = [d for d in devices if d != "cpu" and not d.startswith("cuda:") and d != "mps"]
        if bad:
            raise ValueError(f"unknown devices {bad}: use 'cpu', 'mps' or 'cuda:<index>'")
        return devices

    def check_available(self) -> None:
        """Raise when a configured GPU is not visible: CPU only when the config says so."""
        import torch

        cuda = [d for d in self.devices if d.startswith("cuda:")]
        if cuda:
            seen = torch.cuda.device_count()
            missing = [d for d in cuda if int(d.split(":")[1]) >= seen]
            if missing:
                raise RuntimeError(
                    f"devices {missing} are configured but torch sees {seen} CUDA device(s); "
                    "set DevicePool.devices to ['cpu'] to run on the CPU"
                )

    @contextmanager
    def claim(
        self, run_tags: Mapping[str, str], log: Callable[[str], None] = print
    ) -> Iterator[str]:
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
