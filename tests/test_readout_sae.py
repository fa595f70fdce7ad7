"""The embedded SAEs' training recipe: readout residuals of non-validation prompts mixed into the corpus, b_dec
held at their mean. A planted between-task signal that the corpus-only recipe loses and the recipe keeps, on
held-out readouts; validation prompts never reach the training rows; the readout rows are Phase 1's residuals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.study.analysis import embedded_saes
from pva_dagster.study.analysis.corpus import collect_readout_residuals
from pva_dagster.study.analysis.embedded_saes import (
    ReadoutPrompts,
    SAETrainingPlan,
    mix_readout_rows,
    readout_training_prompts,
    train_embedded_saes,
    train_layer_sae,
)
from pva_dagster.study.analysis.sae_quality import layer_quality
from pva_dagster.study.generation.labelled_generation import PromptFormat
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.prompts import DEFAULT_TEMPLATE
from pva_dagster.study.layout import DataLayout
from tests.helpers import one_thread

D_MODEL, PLANTED = 32, 3
# Small enough to train in a second or two: 64 latents, k 4, 400 steps of 128.
PLAN = SAETrainingPlan(d_sae=64, k=4, training_tokens=128 * 400, batch_size=128, lr=3e-3, seed=0)
CORPUS_ONLY = dataclasses.replace(PLAN, readout_share=0.0, centre_on_readout=False)


def _planted(n_corpus: int, n_train: int, n_held_out: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Broad corpus rows (unit variance in every direction) and readout rows: a cluster at norm ~8 away from the
    corpus mean that varies between tasks along PLANTED directions only (std 0.5), plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    corpus = torch.randn(n_corpus, D_MODEL, generator=generator)
    centre = 8 * torch.nn.functional.normalize(torch.randn(D_MODEL, generator=generator), dim=0)
    directions = torch.linalg.qr(torch.randn(D_MODEL, PLANTED, generator=generator))[0].T  # [PLANTED, D_MODEL]

    def readout(n: int) -> torch.Tensor:
        signal = 0.5 * torch.randn(n, PLANTED, generator=generator) @ directions
        return centre + signal + 0.03 * torch.randn(n, D_MODEL, generator=generator)

    return corpus, readout(n_train), readout(n_held_out)


def test_the_recipe_keeps_a_planted_between_task_signal_that_the_corpus_alone_loses():
    """On held-out readout residuals the corpus-only SAE's error is larger than all the variation between tasks;
    the recipe's (readouts at a quarter of the samples, b_dec held at their mean) is well under half of it."""
    corpus, train, held_out = _planted(n_corpus=4096, n_train=120, n_held_out=80, seed=1)
    quality = {}
    with one_thread():
        for name, plan in {"corpus only": CORPUS_ONLY, "recipe": PLAN}.items():
            sae, _ = train_layer_sae(corpus, train, layer=0, plan=plan)
            quality[name] = layer_quality(held_out.numpy(), sae, layer=0)["fvu_between_tasks"]
    assert quality["corpus only"] > 1.0, quality
    assert quality["recipe"] < 0.5, quality


def test_readouts_fill_their_share_of_the_training_rows_in_order():
    corpus, readout = torch.zeros(300, 2), torch.arange(14.0).reshape(7, 2)
    mixed = mix_readout_rows(corpus, readout, share=0.25)
    assert len(mixed) == 400 and torch.equal(mixed[:300], corpus)
    assert torch.equal(mixed[300:307], readout) and torch.equal(mixed[307:314], readout)  # cycled in order
    assert torch.equal(mix_readout_rows(corpus, readout[:0], share=0.0), corpus)
    with pytest.raises(ValueError, match="share must be in"):
        mix_readout_rows(corpus, readout, share=1.0)


PROBLEMS = pd.DataFrame({
    "task_id": [1, 2, 3, 4, 5],
    "text": [f"Write function number {i}." for i in range(1, 6)],
    "test_list": [[f"assert f{i}() == {i}"] for i in range(1, 6)],
})
# Task 5 is in no split: only the allow-listed splits are read.
SPLITS = pd.DataFrame({"task_id": [1, 2, 3, 4], "split": ["validation", "sae", "hyperparams", "validation"]})
FORMAT = PromptFormat(DEFAULT_TEMPLATE, use_chat_template=False)


def test_only_sae_and_hyperparams_problems_become_training_prompts():
    prompts = readout_training_prompts(PROBLEMS, SPLITS, FORMAT, tokenizer=None)
    assert prompts == tuple(FORMAT.prompts(PROBLEMS[PROBLEMS.task_id.isin([2, 3])], None).values())
    assert all(prompt.endswith("# Solution:") for prompt in prompts)
    with pytest.raises(ValueError, match="no problem is in the splits"):
        readout_training_prompts(PROBLEMS, SPLITS[SPLITS.split == "validation"], FORMAT, tokenizer=None)


@pytest.fixture(scope="module")
def tiny_model(tiny_gemma2_dir):
    return load_causal_lm(str(tiny_gemma2_dir))


def test_validation_prompts_never_enter_the_training_rows(tiny_model, tmp_path, monkeypatch):
    """Every row the SAE trains on is a corpus residual or the readout residual of a training prompt; none is a
    validation prompt's. The same prompts keep the SAE, other prompts retrain it."""
    model, tokenizer = tiny_model
    seen: list[torch.Tensor] = []

    def spy(rows, layer, **settings):
        seen.append(rows.clone())
        return real(rows, layer, **settings)

    real = embedded_saes.train_topk_sae
    monkeypatch.setattr(embedded_saes, "train_topk_sae", spy)
    prompts = readout_training_prompts(PROBLEMS, SPLITS, FORMAT, tokenizer)
    validation = tuple(FORMAT.prompts(PROBLEMS[PROBLEMS.task_id.isin([1, 4])], tokenizer).values())
    plan = SAETrainingPlan(d_sae=16, k=2, corpus_tokens=256, training_tokens=512, batch_size=64, corpus_files=2,
                           context_len=32, readout_positions=2, seed_variants=0)  # fmt: skip

    def train(readout: tuple[str, ...]) -> list[int]:
        reports = train_embedded_saes(
            model, tokenizer, [1], DataLayout(tmp_path), plan, ReadoutPrompts(readout, 2048), str
        )
        return sorted(reports)

    with one_thread():
        assert train(prompts) == [1]
        train_rows = collect_readout_residuals(model, tokenizer, prompts, [1], 2, 2048, 16)[1]
        held_rows = collect_readout_residuals(model, tokenizer, validation, [1], 2, 2048, 16)[1]
        assert train(prompts) == []  # the same prompts: kept
        assert train(prompts[:1]) == [1]  # other prompts: retrained
    rows = seen[0]
    assert len(rows) == 256 + round(256 * plan.readout_share / (1 - plan.readout_share))
    assert _nearest(rows[256:], train_rows).max() < 1e-5  # each a training prompt's readout residual
    assert _nearest(rows, held_rows).min() > 1e-2  # no validation prompt's, anywhere


def _nearest(rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Each row's distance to the nearest candidate (computed directly, not through a matrix product)."""
    return torch.cdist(rows, candidates, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values


def test_the_last_readout_row_is_the_residual_phase_1_stores(tiny_model):
    """Right-padded in batches, each prompt's first row is its last token's block output as one unpadded forward
    pass gives it (Phase 1 stores that residual), the second row the token before."""
    model, tokenizer = tiny_model
    prompts = FORMAT.prompts(PROBLEMS, tokenizer)
    batched = collect_readout_residuals(model, tokenizer, list(prompts.values()), [0, 1], 2, 2048, 3)
    for index, prompt in enumerate(prompts.values()):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states
        for layer in (0, 1):
            expected = hidden[layer + 1][0, [-1, -2]].float()
            np.testing.assert_allclose(batched[layer][2 * index : 2 * index + 2], expected, atol=1e-4, rtol=1e-4)
