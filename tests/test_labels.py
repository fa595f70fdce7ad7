"""Two labels per solution: the base asserts, and the base asserts with the extended tests; what the stronger
label changes (flips, discovery under each label); the general-text cut-off relative to the SAE's density."""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.analysis.general_text_cutoff import layer_cutoffs
from pva_dagster.study.analysis.separation import rank_latents, separation_scores
from pva_dagster.study.evaluation.label_comparison import label_flips, rank1_auroc_by_label, top_latents_by_label
from pva_dagster.study.generation.batched import Generation
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.generation.solutions import Generator, Task, label_generations
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.extended_tests import generate
from pva_dagster.study.problems.labels import BASE_LABEL, EXTENDED_LABEL
from pva_dagster.study.sandbox.execution import SandboxLimits

RIGHT = "```python\ndef add_numbers(a, b):\n    return a + b\n```"


def _lookup_table(test_list: tuple[str, ...]) -> str:
    """add_numbers as a table of its asserts' answers: it passes them and little else."""
    entries = []
    for test in test_list:  # ``assert add_numbers(1, 2) == 3``
        compare = ast.parse(test).body[0].test  # type: ignore[attr-defined]
        entries.append(f"({', '.join(map(ast.unparse, compare.left.args))}): {ast.unparse(compare.comparators[0])}")
    return f"```python\ndef add_numbers(a, b):\n    return {{{', '.join(entries)}}}.get((a, b), 0)\n```"


def _generation(index: int, completion: str) -> Generation:
    return Generation(index, 0, completion, 10, 10, False, 0.1, np.zeros((0, 4), np.float32))


@pytest.fixture(scope="module")
def add_numbers_task() -> Task:
    problem = load_embedded()[0]
    assert problem.code.startswith("def add_numbers(a, b)")
    (extended,) = generate([problem], max_tests=10)
    return Task(problem.task_id, "prompt", problem.test_list, problem.test_setup_code, extended.tests)


@pytest.mark.parametrize("rule", [EXTENDED_LABEL, BASE_LABEL])
def test_a_lookup_table_passes_the_base_asserts_and_only_the_extended_rule_calls_it_incorrect(add_numbers_task, rule):
    generator = Generator(None, None, "none", GenerationSettings(), SandboxLimits(), 2, rule)  # judging needs no model
    wrong_code = _lookup_table(add_numbers_task.test_list)
    right, wrong = label_generations(
        [add_numbers_task], [_generation(0, RIGHT), _generation(0, wrong_code)], generator
    )
    assert right["passed_base"] and right["passed_extended"] and right["passed"]
    assert wrong["passed_base"] and not wrong["passed_extended"]
    assert wrong["passed"] is (rule == BASE_LABEL)
    assert wrong["label"] == ("correct" if rule == BASE_LABEL else "incorrect")


def test_without_extended_tests_both_labels_agree(add_numbers_task):
    bare = Task(add_numbers_task.task_id, "prompt", add_numbers_task.test_list)
    generator = Generator(None, None, "none", GenerationSettings(), SandboxLimits(), 1, EXTENDED_LABEL)
    (wrong,) = label_generations([bare], [_generation(0, _lookup_table(bare.test_list))], generator)
    assert wrong["passed_base"] and wrong["passed_extended"] and wrong["passed"]


def _tasks(base: list[bool], extended: list[bool], split: list[str], complexity: list[int]) -> pd.DataFrame:
    return pd.DataFrame({
        "task_id": range(len(base)), "split": split, "complexity": complexity, "passed_base": base,
        "passed_extended": extended, "correct": extended,
    })


def test_flips_count_base_correct_solutions_the_extended_tests_reject():
    tasks = _tasks(
        base=[True, True, True, False, True, True], extended=[True, False, False, False, True, False],
        split=["sae", "sae", "validation", "validation", "validation", "sae"], complexity=[1, 1, 1, 1, 8, 8],
    )
    flips = label_flips(tasks).set_index(["split", "difficulty"])
    assert flips.loc[("all", "all")].to_dict() == {
        "tasks": 6, "base_correct": 5, "extended_correct": 2, "flipped": 3, "flipped_share": 0.6, "judged_again": 0,
        "changed_when_judged_again": 0,
    }
    assert flips.loc[("sae", "easy"), "flipped"] == 1 and flips.loc[("validation", "easy"), "flipped"] == 1
    assert flips.loc[("sae", "hard"), "flipped"] == 1 and flips.loc[("validation", "hard"), "flipped"] == 0


def test_discovery_under_each_label_finds_the_latent_that_tracks_that_label():
    rng = np.random.default_rng(0)
    n = 120
    base = rng.random(n) < 0.6
    extended = base & (rng.random(n) < 0.5)  # the extended tests reject about half the base-correct
    latents = rng.random((n, 6)) * 0.1
    latents[:, 2] = base + 0.05 * rng.random(n)  # fires on base-correct solutions
    latents[:, 4] = extended + 0.05 * rng.random(n)  # fires on extended-correct ones
    latents[latents < 0.5] = 0.0
    tasks = _tasks(list(base), list(extended), ["sae"] * 60 + ["validation"] * 60, [1] * n)
    ranked = top_latents_by_label(tasks, {3: latents}, {3: np.zeros(6)}, {3: 0.02}, top_n=10, keep=3)
    rank1 = ranked[(ranked["rank"] == 1) & (ranked.direction == "correct")].set_index("label").latent
    assert rank1.to_dict() == {BASE_LABEL: 2, EXTENDED_LABEL: 4}
    table = rank1_auroc_by_label(tasks, {3: latents}, ranked, seed=0, resamples=200)
    own = table[(table.direction == "correct") & (table.discovered_under == table.scored_under)]
    assert (own.auroc > 0.95).all() and len(own) == 2
    crossed = table[(table.direction == "correct") & (table.discovered_under == BASE_LABEL)]
    assert crossed.set_index("scored_under").auroc[EXTENDED_LABEL] < 0.9  # the base latent misreads the stronger label


def test_a_cutoff_relative_to_the_density_keeps_what_2_percent_drops():
    rng = np.random.default_rng(1)
    correct = rng.random(80) < 0.5
    latents = np.zeros((80, 64))
    latents[:, 7] = correct  # the one latent that separates
    scores = separation_scores(latents, correct, layer=0)
    freq = np.full(64, 0.0156)  # a TopK SAE: every latent fires on k/d of general text ...
    freq[7] = 0.03  # ... and this one on twice the average
    absolute = rank_latents(scores, {0: freq}, top_n=10, max_general_freq=0.02, keep=5)
    relative = rank_latents(scores, {0: freq}, top_n=10, max_general_freq=layer_cutoffs({0: freq}, 0.02, 4.0), keep=5)
    assert 7 not in absolute.latent.tolist() and relative.latent.tolist()[0] == 7
    assert layer_cutoffs({0: freq}, 0.02, None) == {0: 0.02}
    assert layer_cutoffs({0: freq}, 0.02, 4.0)[0] == pytest.approx(4 * freq.mean())
