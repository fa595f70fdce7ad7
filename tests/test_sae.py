"""SAEs through SAELens on the real embedded model: residual collection, TopK training, save/load, encoding.

One module-scoped residual collection (1,024 tokens of standard-library code through SmolLM2, ~5 s) and one
small SAE training (~3 s) feed every test; the session's model conversion adds ~20-30 s once. Model forward
passes and SAE training run on one torch thread: on this shared 2-core machine two OpenMP threads measured 6x
slower than one.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pva_dagster.study.analysis.corpus import (
    CORPORA,
    collect_residuals,
    corpus_fingerprint,
    fortunes_corpus,
    package_version,
    sample_position_residuals,
    stdlib_code_corpus,
)
from pva_dagster.study.analysis.sae import (
    encode,
    load_local_sae,
    reconstruction_report,
    sae_hook_layer,
    save_sae,
    train_topk_sae,
)
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.residual import decoder_blocks, hook_name, record_block_outputs
from pva_dagster.study.layout import DataLayout
from tests.helpers import one_thread

LAYER = 3
D_SAE, K = 256, 16
TOKENS, HELD_OUT = 1024, 256
EPOCHS = 24


@pytest.fixture(scope="module")
def model_and_tokenizer(embedded_model_dir):
    torch.manual_seed(0)
    return load_causal_lm(str(embedded_model_dir))


@pytest.fixture(scope="module")
def residuals(model_and_tokenizer) -> torch.Tensor:
    model, tokenizer = model_and_tokenizer
    texts = stdlib_code_corpus(max_files=4, seed=0)
    with one_thread():
        collected = collect_residuals(
            model, tokenizer, texts, [LAYER], context_len=64, max_tokens=TOKENS, batch_size=8
        )
    return collected[LAYER]


@pytest.fixture(scope="module")
def trained(residuals):
    """A TopK SAE trained on all but the last HELD_OUT residual rows (24 passes over them, ~2 s)."""
    train = residuals[:-HELD_OUT]
    with one_thread():
        sae, report = train_topk_sae(
            train, layer=LAYER, d_sae=D_SAE, k=K, training_tokens=EPOCHS * len(train), batch_size=128, lr=3e-3,
            seed=0,
        )
    return sae, report


def test_stdlib_corpus_is_real_code_and_seeded():
    first = stdlib_code_corpus(max_files=5, seed=1)
    assert first == stdlib_code_corpus(max_files=5, seed=1)
    assert first != stdlib_code_corpus(max_files=5, seed=2)
    assert len(first) == 5 and all(text.strip() for text in first)
    for text in first:
        compile(text, "<stdlib>", "exec")  # every text is valid Python source


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def test_general_text_is_english_prose_not_python():
    prose = fortunes_corpus()
    assert len(prose) >= 1000 and all(text.strip() for text in prose)
    assert CORPORA["fortunes"]() == prose and "python_docs" not in CORPORA
    # Prose rarely parses as Python (a bare word or a short phrase can); code would almost always.
    assert sum(map(_is_python, prose)) / len(prose) < 0.2
    assert package_version("fortunes")  # recorded in the asset's metadata
    assert corpus_fingerprint(prose) == corpus_fingerprint(list(prose))
    assert corpus_fingerprint(prose) != corpus_fingerprint(prose[1:])
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        fortunes_corpus(Path("/nonexistent/fortunes"))


def test_one_random_position_per_document_is_that_prefixs_own_forward(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    texts = fortunes_corpus()[:40]
    widths: list[int] = []  # of each batch the model reads
    embed = model.get_input_embeddings().register_forward_pre_hook(lambda _m, args: widths.append(args[0].shape[1]))
    with one_thread():
        try:
            got = sample_position_residuals(model, tokenizer, texts, [LAYER], 6, context_len=32, batch_size=4, seed=5)
        finally:
            embed.remove()
        again = sample_position_residuals(model, tokenizer, texts, [LAYER], 6, context_len=32, batch_size=3, seed=5)
        # Redraw the same documents and positions, and run each prefix alone.
        rng = random.Random(5)
        expected, expected_prefixes = [], []
        for text in rng.sample(texts, 6):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:31]
            prefix = [tokenizer.bos_token_id, *ids[: rng.randrange(len(ids)) + 1]]
            expected_prefixes.append(prefix)
            with torch.no_grad(), record_block_outputs(model, [LAYER]) as recorded:
                model.model(input_ids=torch.tensor([prefix]))
            expected.append(recorded[LAYER][0][0, -1])
    assert got[LAYER].shape == (6, 576)
    torch.testing.assert_close(got[LAYER], torch.stack(expected), rtol=1e-4, atol=1e-4)  # rows in draw order
    # Shortest prefixes first: the first batch pads only to the 4th-shortest length (BOS included).
    assert len(widths) == 2 and widths[0] == sorted(len(p) for p in expected_prefixes)[3] <= widths[1]
    torch.testing.assert_close(got[LAYER], again[LAYER], rtol=1e-4, atol=1e-4)  # batching does not matter
    with pytest.raises(ValueError, match="n_documents"):
        sample_position_residuals(model, tokenizer, texts, [LAYER], 41, context_len=32, batch_size=4, seed=5)


def test_collected_rows_are_the_unpadded_forward_without_bos(model_and_tokenizer):
    """Batched, right-padded collection gives, row for row, each text's own forward pass minus its BOS."""
    model, tokenizer = model_and_tokenizer
    texts = ["def add(a, b):\n    return a + b\n", "import os\n\nprint(os.getcwd())  # where are we?\n"]
    expected: dict[int, list[torch.Tensor]] = {LAYER: [], 7: []}
    with one_thread():
        # The forward stops after block 7, the last one read: the blocks above it never run.
        with record_block_outputs(model, [8, len(decoder_blocks(model)) - 1]) as above:
            got = collect_residuals(
                model, tokenizer, texts, [LAYER, 7], context_len=64, max_tokens=10_000, batch_size=2
            )
        assert above == {8: [], len(decoder_blocks(model)) - 1: []}
        for text in texts:
            ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
            with torch.no_grad(), record_block_outputs(model, [LAYER, 7]) as recorded:
                model.model(input_ids=torch.tensor([ids]))
            for layer, rows in expected.items():
                rows.append(recorded[layer][0][0, 1:])
    lengths = [len(rows) for rows in expected[LAYER]]
    assert lengths[0] != lengths[1]  # so the batch really was padded
    for layer in (LAYER, 7):
        assert got[layer].dtype == torch.float32 and got[layer].shape == (sum(lengths), 576)
        torch.testing.assert_close(got[layer], torch.cat(expected[layer]), rtol=1e-4, atol=1e-4)


def test_collection_stops_at_max_tokens(model_and_tokenizer, residuals):
    model, tokenizer = model_and_tokenizer
    assert residuals.shape == (TOKENS, 576)
    with one_thread():
        few = collect_residuals(
            model, tokenizer, stdlib_code_corpus(max_files=4, seed=0), [LAYER], context_len=64, max_tokens=100,
            batch_size=2,
        )
    assert few[LAYER].shape == (100, 576)
    # Same texts in the same order: the same rows, computed in smaller batches.
    torch.testing.assert_close(few[LAYER], residuals[:100], rtol=1e-4, atol=1e-4)


def test_trained_sae_reconstructs_real_residuals(trained, residuals, record_property):
    sae, report = trained
    assert sae_hook_layer(sae) == LAYER
    assert report["training_tokens"] == EPOCHS * (TOKENS - HELD_OUT) // 128 * 128
    fit = reconstruction_report(sae, residuals[:-HELD_OUT])
    held_out = reconstruction_report(sae, residuals[-HELD_OUT:])
    record_property("fvu_train", fit["fvu"])
    record_property("fvu_held_out", held_out["fvu"])
    print(f"\nSAE d_sae={D_SAE} k={K} on layer {LAYER}: train {fit}, held-out {held_out}")
    # The mean predictor has FVU 1 by definition; a working SAE explains most of the variance (measured here:
    # 0.09 on the training rows, 0.31 on held-out rows).
    assert fit["fvu"] < 0.5 and held_out["fvu"] < 0.8
    assert 0 < fit["l0"] <= K  # TopK keeps at most k latents (ReLU may zero some of them)
    assert 0.0 <= fit["dead_fraction"] < 0.5


def test_fresh_sae_reconstructs_far_worse(trained, residuals):
    """The report is not a constant: a freshly initialised SAE of the same shape reconstructs far worse."""
    sae, _ = trained
    with one_thread():
        fresh, _ = train_topk_sae(
            residuals[:256], layer=LAYER, d_sae=D_SAE, k=K, training_tokens=1024, batch_size=128, lr=1e-9, seed=1
        )
    assert reconstruction_report(fresh, residuals)["fvu"] > reconstruction_report(sae, residuals)["fvu"] + 0.5


def test_save_and_load_back_give_identical_encodings(trained, residuals, tmp_path):
    sae, _ = trained
    out = save_sae(sae, tmp_path / f"layer_{LAYER}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"layer_{LAYER}"]  # no staging folder left behind
    loaded = load_local_sae(out, device="cpu")
    assert loaded.cfg.metadata.hook_name == hook_name(LAYER) and sae_hook_layer(loaded) == LAYER
    x = residuals[-HELD_OUT:].numpy()
    np.testing.assert_array_equal(encode(loaded, x, batch_size=100), encode(sae, x, batch_size=512))
    # Saving again over an existing folder replaces it whole.
    assert save_sae(loaded, out) == out and load_local_sae(out, "cpu").cfg.d_sae == D_SAE


def test_encode_shape_and_width_check(trained, residuals):
    sae, _ = trained
    latents = encode(sae, residuals[:37].numpy(), batch_size=10)
    assert latents.shape == (37, D_SAE) and latents.dtype == np.float32
    assert ((latents > 0).sum(axis=1) <= K).all()
    with pytest.raises(ValueError, match="d_in=576"):
        encode(sae, np.zeros((3, 100), dtype=np.float32), batch_size=10)


def test_hook_name_other_than_resid_post_raises(trained):
    sae, _ = trained
    original = sae.cfg.metadata.hook_name
    try:
        sae.cfg.metadata.hook_name = f"blocks.{LAYER}.hook_mlp_out"
        with pytest.raises(ValueError, match="hook_mlp_out"):
            sae_hook_layer(sae)
    finally:
        sae.cfg.metadata.hook_name = original


def test_sae_for_another_layer_is_refused(trained, tmp_path):
    """The SAE source refuses an SAE whose hook reads a different layer than the one asked for."""
    from pva_dagster.resources import LocalSAEs
    from pva_dagster.study.layout import DataLayout

    sae, _ = trained
    save_sae(sae, tmp_path / "sae_5")  # a layer-3 SAE stored where layer 5's should be
    source = LocalSAEs(folder=str(tmp_path / "sae_{layer}"))
    with pytest.raises(ValueError, match="layer 5.*layer 3"):
        source.load(5, DataLayout(tmp_path), "cpu")


def test_missing_sae_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "layer_3"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_local_sae(missing, device="cpu")


def test_sae_templates_must_name_the_layer():
    """One SAE per layer: a template without {layer} is refused when the resource is made, not at load."""
    from pva_dagster.resources import LocalSAEs, PretrainedSAEs

    with pytest.raises(ValueError, match=r"'/models/saes' must contain \{layer\}"):
        LocalSAEs(folder="/models/saes")
    with pytest.raises(ValueError, match=r"must contain \{layer\}"):
        PretrainedSAEs(release="gemma-scope-2b-pt-res-canonical", sae_id="layer_12/width_16k/canonical")


def test_embedded_saes_are_retrained_when_the_model_dtype_changes(tiny_gemma2_dir, tmp_path):
    """A trained SAE carries the fingerprint of the model (dtype included) and plan it was trained from: the
    same model finds it current, the same weights in another dtype retrain it."""
    from pva_dagster.study.analysis.embedded_saes import ReadoutPrompts, SAETrainingPlan, train_embedded_saes

    plan = SAETrainingPlan(d_sae=16, k=2, corpus_tokens=256, training_tokens=512, batch_size=64, corpus_files=2,
                           context_len=32, seed_variants=0)  # fmt: skip
    readout = ReadoutPrompts(("Add two numbers.\n\nassert f(1, 2) == 3\n\n# Solution:",), max_prompt_tokens=2048)

    def train(dtype: str) -> list[int]:
        model, tokenizer = load_causal_lm(str(tiny_gemma2_dir), dtype=dtype)
        return sorted(train_embedded_saes(model, tokenizer, [1], DataLayout(tmp_path), plan, readout, log=str))

    assert train("float32") == [1]
    assert train("float32") == []  # current: kept
    assert train("bfloat16") == [1]  # made in float32: retrained
