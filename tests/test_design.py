"""The study design is where a science knob is set; what generation and judging receive comes from it."""

from __future__ import annotations

from dataclasses import fields

import pytest
from pydantic import ValidationError

from pva_dagster.resources import StudyDesign
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.problems.labels import LABEL_RULES


def test_every_generation_knob_the_design_sets_reaches_the_generation_settings() -> None:
    design = StudyDesign(max_new_tokens=17, max_prompt_tokens=333, stop_at_function_end=False, seed=5)
    settings = design.generation_settings(sort_by_length=True)
    shared = [f.name for f in fields(GenerationSettings) if f.name in StudyDesign.model_fields]
    assert {name: getattr(settings, name) for name in shared} == {name: getattr(design, name) for name in shared}
    assert set(shared) >= {"max_new_tokens", "max_prompt_tokens", "stop_at_function_end", "seed"}
    assert (settings.temperature, settings.num_samples, settings.sort_by_length) == (0.0, 1, True)


def test_the_designs_defaults_are_the_generation_settings_defaults() -> None:
    settings, defaults = StudyDesign().generation_settings(), GenerationSettings()
    assert (settings.max_new_tokens, settings.max_prompt_tokens, settings.stop_at_function_end) == (
        defaults.max_new_tokens, defaults.max_prompt_tokens, defaults.stop_at_function_end)  # fmt: skip


def test_a_token_budget_below_one_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="max_new_tokens must be an integer >= 1, got 0"):
        StudyDesign(max_new_tokens=0)


@pytest.mark.parametrize("rule", LABEL_RULES)
def test_the_design_accepts_each_label_rule_the_judge_knows(rule: str) -> None:
    assert StudyDesign(label=rule).label == rule


def test_the_design_refuses_a_label_rule_the_judge_does_not_know() -> None:
    with pytest.raises(ValidationError, match="label"):
        StudyDesign(label="plus")
