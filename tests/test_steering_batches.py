"""Steering units batched together: rows of several units (a vector per row, at different layers) share one
forward pass and give each unit what it gives alone; a problem's rows of every unit share one batch."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from pva_dagster.study.generation.batched import batch_order
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.prompts import build_prompt
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.generation.solutions import Generator, Task
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.labels import BASE_LABEL
from pva_dagster.study.sandbox.execution import SandboxLimits
from pva_dagster.study.steering.sweep import BASELINE, CONTROL, TARGET, SteeringUnit, baseline_unit, run_units

SETTINGS = GenerationSettings(max_new_tokens=48, batch_size=16, stop_at_function_end=True)


def test_batches_take_whole_blocks():
    settings = GenerationSettings(batch_size=4)
    blocks = [7, 7, 7, 3, 3, 3, 9, 9, 9, 1]
    batches = batch_order(None, [f"p{i}" for i in range(10)], 4, settings, blocks)
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert batch_order(None, ["a"] * 5, 2, settings) == [[0, 1], [2, 3], [4]]  # one-prompt blocks: plain chunks


@pytest.fixture(scope="module")
def generator(embedded_model_dir) -> Generator:
    model, tokenizer = load_causal_lm(str(embedded_model_dir), dtype="float32")
    return Generator(model, tokenizer, str(embedded_model_dir), SETTINGS, SandboxLimits(), 2, BASE_LABEL)


def _jobs(generator: Generator) -> list[tuple[SteeringUnit, list[Task], torch.Tensor | None]]:
    problems = load_embedded()[:4]
    tasks = [Task(p.task_id, build_prompt(p.text, list(p.test_list)), p.test_list) for p in problems]
    d_model = generator.model.config.hidden_size
    rows = torch.randn(2, d_model, generator=torch.Generator().manual_seed(0))
    return [
        (baseline_unit("non-validation", "correct"), tasks, None),
        (SteeringUnit("non-validation", 1.0, 30.0, "correct", TARGET, 10, 5, "correct"), tasks, rows[0]),
        (SteeringUnit("non-validation", 1.0, 30.0, "correct", CONTROL, 20, 6, "correct"), tasks, rows[1]),
    ]


def test_units_batched_together_give_what_each_gives_alone(generator, tmp_path):
    jobs = _jobs(generator)
    together = dict(run_units(jobs, generator, out_dir=tmp_path / "together", seed=0))
    alone = {unit: run_units([(unit, t, r)], generator, out_dir=tmp_path / "alone", seed=0)[0][1]
             for unit, t, r in jobs}  # fmt: skip
    for unit, records in together.items():
        pd.testing.assert_series_equal(records.completion, alone[unit].completion, check_names=False)
    baseline = together[jobs[0][0]]
    assert {u.kind for u in together} == {BASELINE, TARGET, CONTROL}
    assert any((together[u].completion != baseline.completion).any() for u in together if u.kind != BASELINE), (
        "the vectors must change some completion for the comparison to mean anything"
    )
    lengths = baseline.n_new_tokens
    assert lengths.nunique() > 1, "rows must finish at different steps, so the batch drops rows mid-decode"


def test_a_batched_run_resumes_each_unit_from_its_own_file(generator, tmp_path):
    jobs = _jobs(generator)
    first = dict(run_units(jobs[:2], generator, out_dir=tmp_path, seed=0))
    logged: list[str] = []
    again = dict(run_units(jobs, generator, out_dir=tmp_path, seed=0, log=logged.append))
    for unit, records in first.items():
        pd.testing.assert_frame_equal(records, again[unit])  # resumed as it was, not generated again
    assert any("4 of 4 tasks already done" in line for line in logged)
    assert any("0 of 4 tasks already done" in line for line in logged)  # the new unit ran


def test_a_unit_steered_at_another_hook_point_is_generated_again(generator, tmp_path):
    """The hook point is in a steered unit's fingerprint: records steered at resid_post are not resumed for a
    run at resid_mid (the unsteered baseline, which adds nothing, is)."""
    jobs = _jobs(generator)[:2]
    run_units(jobs, generator, out_dir=tmp_path, seed=0)
    logged: list[str] = []
    run_units(jobs, generator, out_dir=tmp_path, seed=0, point="resid_mid", log=logged.append)
    baseline, target = (unit.name for unit, _, _ in jobs)
    assert any(f"4 of 4 tasks already done in {baseline}" in line for line in logged), logged
    assert any(f"0 of 4 tasks already done in {target}" in line and "4 stored records made from other inputs"
               in line for line in logged), logged  # fmt: skip
    with pytest.raises(ValueError, match="resid_middle"):
        run_units(jobs, generator, out_dir=tmp_path, seed=0, point="resid_middle")  # type: ignore[arg-type]
