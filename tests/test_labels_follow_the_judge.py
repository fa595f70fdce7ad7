"""Labels follow the judge and records follow their data folder.

A stored record names, besides what generated it, what labelled it (its tests, the sandbox limits, the label
rule, the judge's version): a change there judges the stored code again, and the model is never called. Its
model is named by the weights' content, so a data folder copied elsewhere resumes with nothing generated.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, small_design, small_profile, write_problems
from pva_dagster.resources import LocalModel
from pva_dagster.study.domain import CORRECT, INCORRECT
from pva_dagster.study.generation import solutions
from pva_dagster.study.generation.activation_store import PerRecordActivations
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.prompts import build_prompt
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.generation.solutions import (
    GenerationRun,
    Generator,
    SolutionGroup,
    Task,
    relabel_counts,
    run_solutions,
)
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.labels import EXTENDED_LABEL
from pva_dagster.study.sandbox.execution import SandboxLimits


def _task(task_id: int, text: str, test: str) -> Task:
    return Task(task_id, build_prompt(text, [test]), (test,))


TASKS = [
    _task(1, "Write a function add_numbers(a, b) that returns the sum of a and b.", "assert add_numbers(1, 2) == 3"),
    _task(2, "Write a function square(n) that returns n multiplied by itself.", "assert square(3) == 9"),
]
SETTINGS = GenerationSettings(max_new_tokens=40, batch_size=2, stop_at_function_end=True)


class ModelCalled(AssertionError):
    pass


@pytest.fixture(scope="module")
def smollm(embedded_model_dir):
    return load_causal_lm(str(embedded_model_dir), dtype="float32")


def _generator(smollm, embedded_model_dir) -> Generator:
    model, tokenizer = smollm
    return Generator(model, tokenizer, str(embedded_model_dir), SETTINGS, SandboxLimits(), 2, EXTENDED_LABEL)


def _run(generator: Generator, tasks, tmp_path):
    layout = DataLayout(tmp_path / "data")
    store = PerRecordActivations(lambda label, task, _sample, layer: layout.phase1_0_activation(label, task, layer))
    group = SolutionGroup(tmp_path / "records.parquet", tasks)
    return run_solutions(group, generator, GenerationRun(SETTINGS, 0, [2, 5], store, log=lambda _: None))


def _forbid_forward(model):
    def refuse(*_):
        raise ModelCalled("the model was called")

    return model.register_forward_pre_hook(refuse)


def test_a_new_judge_version_or_new_tests_relabel_the_stored_code_without_the_model(
    smollm, embedded_model_dir, tmp_path, monkeypatch
):
    generator = _generator(smollm, embedded_model_dir)
    first = _run(generator, TASKS, tmp_path)
    assert first.passed.all(), first[["generated_code", "error_message"]]  # the model adds two numbers
    hook = _forbid_forward(generator.model)
    try:
        same = _run(generator, TASKS, tmp_path)  # nothing changed: resumed as it is
        assert not same.relabelled.any()
        monkeypatch.setattr(solutions, "judge_version", lambda: "another judge")
        again = _run(generator, TASKS, tmp_path)
        assert again.relabelled.all() and again.passed.all()
        assert again.completion.tolist() == first.completion.tolist()
        assert relabel_counts(again) == {"judged again": 2, "labels changed when judged again": 0}

        # An extended test the code fails: the label changes, from the same code, and the residual files follow
        # the record to its new label's folder.
        stricter = [TASKS[0], Task(2, TASKS[1].prompt, TASKS[1].test_list, extended_tests=("assert square(2) == 5",))]
        relabelled = _run(generator, stricter, tmp_path).set_index("task_id")
    finally:
        hook.remove()
    assert relabelled.loc[2, "passed_base"] and not relabelled.loc[2, "passed_extended"]
    assert not relabelled.loc[2, "passed"] and relabelled.loc[1, "passed"]
    assert relabelled.loc[2, "passed_before_relabel"] and relabelled.loc[1, "passed_before_relabel"]
    assert relabel_counts(relabelled.reset_index()) == {"judged again": 2, "labels changed when judged again": 1}
    layout = DataLayout(tmp_path / "data")
    moved = [layout.phase1_0_activation(INCORRECT, 2, layer) for layer in (2, 5)]
    assert list(relabelled.loc[2, "activation_files"]) == [str(path) for path in moved]
    assert not any(layout.phase1_0_activation(CORRECT, 2, layer).exists() for layer in (2, 5))
    for path in moved:
        with np.load(path) as npz:
            assert npz["residual"].shape == (576,)


def test_the_model_is_named_by_its_weights_content_not_its_path(smollm, embedded_model_dir, tmp_path):
    copy = shutil.copytree(embedded_model_dir, tmp_path / "elsewhere" / "smollm2")
    model, tokenizer = smollm
    here = Generator(model, tokenizer, str(embedded_model_dir), SETTINGS, SandboxLimits(), 2)
    there = Generator(model, tokenizer, str(copy), SETTINGS, SandboxLimits(), 2)
    assert here.identity() == there.identity() and here.identity()["weights"].startswith("sha256:")
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ', "note": 1}', 1))
    assert Generator(model, tokenizer, str(copy), SETTINGS, SandboxLimits(), 2).identity() != here.identity()
    with pytest.raises(ValueError, match="names their content"):
        Generator(model, tokenizer, "not-a-folder-nor-a-hub-model", SETTINGS, SandboxLimits()).identity()


def test_a_copied_data_folder_resumes_with_nothing_generated(tmp_path, tiny_gemma2_dir):
    problems = write_problems(tmp_path / "problems.jsonl", list(range(1, 7)))
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    shutil.copytree(tiny_gemma2_dir, first_root / "model")

    def profile(root):
        return small_profile(
            root, problems, language_model=LocalModel(path=str(root / "model"), batch_size=2),
            study_design=small_design(max_new_tokens=16, stop_at_function_end=False),
        )

    assert materialize(profile(first_root), ["mbpp_problems", "extended_tests"]).success
    assert materialize(profile(first_root), ["phase1_0_solutions"], partition=FIRST_RANGE).success
    dataset = DataLayout(first_root / "data").phase1_0_dataset(FIRST_RANGE)
    before = pd.read_parquet(dataset)
    shutil.copytree(first_root, second_root)
    shutil.rmtree(first_root)  # nothing of the old folder is left to read

    assert materialize(profile(second_root), ["phase1_0_solutions"], partition=FIRST_RANGE).success
    after = pd.read_parquet(DataLayout(second_root / "data").phase1_0_dataset(FIRST_RANGE))
    # A record made again would carry another generation time: every one is the stored record.
    assert after.generation_seconds.tolist() == before.generation_seconds.tolist()
    assert after.completion.tolist() == before.completion.tolist()
    assert not after.relabelled.any()
    for old, new in zip(before.activation_files, after.activation_files, strict=True):
        assert [f.replace(str(first_root), str(second_root)) for f in old] == list(new)
        for file in new:
            with np.load(file) as npz:
                assert torch.from_numpy(npz["residual"]).shape == (64,)


def test_without_a_memory_cgroup_the_runs_at_once_fit_the_stated_share_of_the_host():
    from pva_dagster.study.sandbox.limits import HOST_SHARE, MIN_MEMORY_MB, MIN_PROCESSES, fit_to_host

    roomy, says = fit_to_host(SandboxLimits(), runs=2, available=512 * 1024)
    assert roomy == SandboxLimits() and "holds" in says and "shrunk" not in says
    fitted, says = fit_to_host(SandboxLimits(), runs=4, available=20 * 1024)
    budget = HOST_SHARE * 20 * 1024 / 4
    assert fitted.memory_mb * fitted.max_processes <= budget < SandboxLimits().memory_mb * SandboxLimits().max_processes
    assert fitted.max_processes >= MIN_PROCESSES and "shrunk from 64 processes x 1024 MiB" in says
    tiny, says = fit_to_host(SandboxLimits(), runs=16, available=1024)
    assert (tiny.max_processes, tiny.memory_mb) == (MIN_PROCESSES, MIN_MEMORY_MB) and "does NOT hold" in says
