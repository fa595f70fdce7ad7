"""A Phase 1 run killed part-way (SIGKILL, no clean-up) resumes: one record per task, NPZ files complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, small_design, small_profile, write_problems
from pva_dagster.resources import LocalModel
from pva_dagster.study.layout import DataLayout

ROOT = Path(__file__).resolve().parents[1]
RUN_PHASE1 = """
import sys
from pva_dagster.resources import LocalModel
from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, small_design, small_profile
tmp, problems, model = sys.argv[1:4]
from pathlib import Path
profile = small_profile(Path(tmp), Path(problems), language_model=LocalModel(path=model, batch_size=2),
                            study_design=small_design(max_new_tokens=24, stop_at_function_end=False))
materialize(profile, ["mbpp_problems", "extended_tests"])
materialize(profile, ["phase1_0_solutions"], partition=FIRST_RANGE)
"""


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path, tiny_gemma2_dir):
    problems = write_problems(tmp_path / "problems.jsonl", list(range(1, 25)))
    dataset = DataLayout(tmp_path / "data").phase1_0_dataset(FIRST_RANGE)
    progress = DataLayout.records_in_progress(dataset)  # what the killed run had saved
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_PHASE1, str(tmp_path), str(problems), str(tiny_gemma2_dir)],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if progress.exists() and len(pd.read_parquet(progress)) >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed; make it longer"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    saved_before = len(pd.read_parquet(progress))
    assert 2 <= saved_before < 24

    profile = small_profile(
        tmp_path, problems,
        language_model=LocalModel(path=str(tiny_gemma2_dir), batch_size=2),
        study_design=small_design(max_new_tokens=24, stop_at_function_end=False),
    )
    assert materialize(profile, ["phase1_0_solutions"], partition=FIRST_RANGE).success
    records = pd.read_parquet(dataset)
    assert sorted(records.task_id) == list(range(1, 25))
    assert not records.duplicated(["task_id", "sample"]).any()
    for row in records.itertuples():
        assert len(row.activation_files) == 4  # every layer of the tiny Gemma 2
        for file in row.activation_files:
            with np.load(file) as npz:
                assert npz["residual"].shape == (64,)
    npz_files = list((tmp_path / "data/phase1_0/activations").rglob("*.npz"))
    assert len(npz_files) == 24 * 4, "no stale or duplicate activation files"
