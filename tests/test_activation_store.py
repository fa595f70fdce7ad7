"""Phase 1.2 stores each task's prompt residual once per layer, shared by every sample and temperature."""

from __future__ import annotations

import os

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.rehearsal.random_models import build_random_gemma2
from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, small_design, small_profile, write_problems
from pva_dagster.resources import LocalModel
from pva_dagster.study import storage
from pva_dagster.study.generation.activation_store import MADE_BY, SharedTaskActivations, made_by_of
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.residual import record_block_outputs
from pva_dagster.study.layout import DataLayout

TEMPERATURES = (0.3, 0.6)
N_LAYERS = 4  # every block of the tiny Gemma 2


def _store(layout: DataLayout) -> SharedTaskActivations:
    return SharedTaskActivations(layout.phase1_2_activation)


def _record(task_id: int, sample: int) -> dict:
    return {"task_id": task_id, "sample": sample, "label": "correct"}


def _residual(path) -> np.ndarray:
    with np.load(path) as npz:
        return npz["residual"]


def test_a_file_is_written_once_reused_and_rewritten_when_made_otherwise(tmp_path):
    layout = DataLayout(tmp_path)
    first, other = np.ones((2, 8), np.float32), np.full((2, 8), 2.0, np.float32)
    paths = _store(layout).save(_record(7, 0), first, [1, 3], source="prompt A")
    assert paths == [str(layout.phase1_2_activation(7, 1)), str(layout.phase1_2_activation(7, 3))]
    inodes = [os.stat(p).st_ino for p in paths]
    # Another sample, and a fresh store as another temperature's partition would have: the file is reused.
    assert _store(layout).save(_record(7, 1), other, [1, 3], source="prompt A") == paths
    assert [os.stat(p).st_ino for p in paths] == inodes
    np.testing.assert_array_equal(_residual(paths[1]), first[1])
    # Made from another prompt or model: rewritten, never reused.
    assert _store(layout).save(_record(7, 0), other, [1, 3], source="prompt B") == paths
    np.testing.assert_array_equal(_residual(paths[1]), other[1])
    assert made_by_of(layout.phase1_2_activation(7, 1)) != made_by_of(layout.phase1_2_activation(7, 3))


def test_files_without_a_fingerprint_are_rewritten(tmp_path):
    layout = DataLayout(tmp_path)
    shared = layout.phase1_2_activation(7, 1)
    storage.write_npz(shared, residual=np.zeros(8, np.float32), layer=np.int64(1))  # no made_by
    assert made_by_of(shared) is None and made_by_of(tmp_path / "absent.npz") is None
    _store(layout).save(_record(7, 0), np.ones((1, 8), np.float32), [1], source="prompt A")
    np.testing.assert_array_equal(_residual(shared), np.ones(8))
    with np.load(shared) as npz:
        assert MADE_BY in npz.files


# Phase 1.2 through Dagster on the tiny Gemma 2: two temperatures, two samples each.


def _profile(tmp_path, problems, model_dir, **design):
    return small_profile(
        # float32: the files are compared with a float32 forward of each prompt alone
        tmp_path, problems, language_model=LocalModel(path=str(model_dir), batch_size=4, dtype="float32"),
        study_design=small_design(temperatures=list(TEMPERATURES), max_new_tokens=16, **design),
    )


def _run_phase1_2(profile, temperatures=TEMPERATURES) -> None:
    for temperature in temperatures:
        key = dg.MultiPartitionKey({"temperature": str(temperature), "task_range": FIRST_RANGE})
        assert materialize(profile, ["phase1_2_solutions"], partition=key).success


def _records(layout: DataLayout) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(layout.phase1_2_dataset(t, FIRST_RANGE)) for t in TEMPERATURES])


def _inodes(layout: DataLayout) -> dict[str, int]:
    return {str(p): p.stat().st_ino for p in (layout.phase1_2_dir / "activations").rglob("*.npz")}


def _assert_files_hold_the_prefill(records: pd.DataFrame, model_dir) -> None:
    """Each task's files hold the output of each block at the last token of a plain forward of its prompt alone."""
    model, tokenizer = load_causal_lm(str(model_dir))
    for row in records.drop_duplicates("task_id").itertuples():
        # Block outputs, not hidden_states: Gemma 2's last hidden state has the final norm applied.
        with torch.no_grad(), record_block_outputs(model, list(row.layers)) as outputs:
            model(**tokenizer([row.prompt], return_tensors="pt"))
        for layer, file in zip(row.layers, row.activation_files, strict=True):
            np.testing.assert_allclose(_residual(file), outputs[layer][0][0, -1].numpy(), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def phase1_2_run(tmp_path_factory, tiny_gemma2_dir):
    tmp_path = tmp_path_factory.mktemp("phase1_2")
    problems = write_problems(tmp_path / "problems.jsonl", list(range(1, 25)))
    profile = _profile(tmp_path, problems, tiny_gemma2_dir)
    assert materialize(profile, ["mbpp_problems", "difficulty_mapping", "extended_tests", "problem_splits"]).success
    layout = DataLayout(tmp_path / "data")
    _run_phase1_2(profile, temperatures=TEMPERATURES[:1])
    written = _inodes(layout)
    _run_phase1_2(profile, temperatures=TEMPERATURES[1:])  # another temperature finds the files: not rewritten
    assert _inodes(layout) == written
    return tmp_path, problems, layout


def test_every_sample_and_temperature_of_a_task_points_at_its_one_prefill(phase1_2_run, tiny_gemma2_dir):
    _, _, layout = phase1_2_run
    records = _records(layout)
    validation = pd.read_parquet(layout.split_file("validation")).task_id
    assert set(records.task_id) == set(validation) and len(records) == len(validation) * len(TEMPERATURES) * 2
    for task_id, files in records.groupby("task_id").activation_files:
        shared = [str(layout.phase1_2_activation(task_id, layer)) for layer in range(N_LAYERS)]
        assert [list(f) for f in files] == [shared] * 4  # 2 temperatures x 2 samples
    assert len(_inodes(layout)) == len(validation) * N_LAYERS, "one file per task and layer, nothing else"
    _assert_files_hold_the_prefill(records, tiny_gemma2_dir)


def test_resume_reuses_the_files_and_a_changed_prompt_or_model_rewrites_them(phase1_2_run, tiny_gemma2_dir):
    tmp_path, problems, layout = phase1_2_run
    before, records = _inodes(layout), _records(layout)
    _run_phase1_2(_profile(tmp_path, problems, tiny_gemma2_dir))  # nothing to do: no record, no file rewritten
    assert _inodes(layout) == before
    pd.testing.assert_frame_equal(_records(layout), records)

    # A changed prompt: the records are made again and the files rewritten from the new prompt's prefill.
    template = small_design().prompt_template.replace("# Solution:", "# Your solution:")
    assert template != small_design().prompt_template
    _run_phase1_2(_profile(tmp_path, problems, tiny_gemma2_dir, prompt_template=template), temperatures=[0.3])
    changed = pd.read_parquet(layout.phase1_2_dataset(0.3, FIRST_RANGE))
    assert changed.prompt.str.endswith("# Your solution:").all()
    assert set(_inodes(layout)) == set(before) and not set(_inodes(layout).items()) & set(before.items())
    _assert_files_hold_the_prefill(changed, tiny_gemma2_dir)

    # Another model (other weights, another folder): the same again.
    other_model = build_random_gemma2(tmp_path / "other_gemma2", seed=1)
    _run_phase1_2(_profile(tmp_path, problems, other_model), temperatures=[0.3])
    _assert_files_hold_the_prefill(pd.read_parquet(layout.phase1_2_dataset(0.3, FIRST_RANGE)), other_model)
