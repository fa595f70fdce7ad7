"""The device pool: a real file lock keeps two runs off one device; tags pick devices; no silent fallback."""

from __future__ import annotations

import threading
import time

import pytest

from pva_dagster.resources.devices import DevicePool


def test_two_claims_never_share_a_device(tmp_path):
    # flock locks belong to an open file description, so two pools in two threads contend like two runs do.
    pool = DevicePool(devices=["cpu"], lock_dir=str(tmp_path), poll_seconds=0.1)
    claimed, release = threading.Event(), threading.Event()

    def first_run():
        with pool.claim({}, lambda m: None):
            claimed.set()
            release.wait(10)

    holder = threading.Thread(target=first_run)
    holder.start()
    assert claimed.wait(10)
    threading.Timer(1.0, release.set).start()
    started, messages = time.perf_counter(), []
    with pool.claim({}, messages.append) as device:
        waited = time.perf_counter() - started
    holder.join()
    assert device == "cpu"
    assert waited > 0.9, "the second claim must wait for the first run to let go"
    assert any("busy" in m for m in messages)


def test_gpu_tag_picks_the_device_and_a_bad_tag_is_named(tmp_path):
    pool = DevicePool(devices=["cpu", "cpu"], lock_dir=str(tmp_path))
    with pytest.raises(ValueError, match="gpu='7'"), pool.claim({"gpu": "7"}, lambda m: None):
        pass


def test_configured_gpu_that_is_absent_is_an_error_not_a_cpu_fallback(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    pool = DevicePool(devices=["cuda:0"], lock_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="cuda:0"), pool.claim({}, lambda m: None):
        pass


def test_unknown_device_kind_is_rejected():
    with pytest.raises(ValueError, match="tpu"):
        DevicePool(devices=["tpu:0"])
