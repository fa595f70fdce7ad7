"""The per-process model cache on a real (random-weight) Gemma 2: consecutive borrows load once, a release or a
borrow that does not keep the model frees it, and a forward hook left on a borrowed model never reaches the
next borrower."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from pva_dagster.assets.loading import with_model_released
from pva_dagster.resources import LocalModel
from pva_dagster.resources.model_cache import MODELS, ModelCache, ModelKey, hook_count
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.steering.vectors import steered


def _loader(path: str, dtype: str = "float32"):
    return lambda: load_causal_lm(path, dtype=dtype, device="cpu")


def _gone(ref: weakref.ref) -> bool:
    gc.collect()
    return ref() is None


def test_consecutive_borrows_of_the_same_weights_load_once_and_other_weights_replace_them(tiny_gemma2_dir):
    cache, path = ModelCache(), str(tiny_gemma2_dir)
    key = ModelKey.of(path, "float32", "cpu")
    with cache.borrow(key, _loader(path)) as (model, _):
        first = weakref.ref(model)
    with cache.borrow(ModelKey.of(path, "float32", "cpu"), _loader(path)) as (model, _):
        assert model is first()
    assert cache.loads == 1 and cache.held == key
    del model

    other = ModelKey.of(path, "bfloat16", "cpu")
    with cache.borrow(other, _loader(path, "bfloat16")) as (model, _):
        assert model.dtype == torch.bfloat16
        assert _gone(first), "the float32 model was freed before the bfloat16 one loaded"
    assert cache.loads == 2 and cache.held == other
    second = weakref.ref(model)
    del model
    cache.release()
    assert cache.held is None and _gone(second)


def test_rewritten_weights_are_another_key(tiny_gemma2_dir, tmp_path):
    before = ModelKey.of(str(tiny_gemma2_dir), "float32", "cpu")
    assert before.files, "a local folder's files are part of the key"
    copy = tmp_path / "model"
    copy.mkdir()
    for file in tiny_gemma2_dir.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    key = ModelKey.of(str(copy), "float32", "cpu")
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert ModelKey.of(str(copy), "float32", "cpu") != key


def test_a_hook_left_on_a_borrowed_model_drops_it_and_fails_the_borrower(tiny_gemma2_dir):
    cache, path = ModelCache(), str(tiny_gemma2_dir)
    key = ModelKey.of(path, "float32", "cpu")
    with cache.borrow(key, _loader(path)) as (model, _):
        hooks = hook_count(model)
        with steered(model, 1, torch.ones(model.config.hidden_size)):  # removed when the block ends
            assert hook_count(model) == hooks + 1
    assert cache.held == key and hook_count(model) == hooks

    with pytest.raises(RuntimeError, match="1 forward hook"), cache.borrow(key, _loader(path)) as (model, _):
        model.model.layers[0].register_forward_hook(lambda *_: None)
    assert cache.held is None
    with cache.borrow(key, _loader(path)) as (fresh, _):
        assert fresh is not model and hook_count(fresh) == hooks
    assert cache.loads == 2


def test_one_borrower_at_a_time():
    cache = ModelCache()
    key = ModelKey("a-model", "float32", "cpu")
    with cache.borrow(key, lambda: (torch.nn.Linear(2, 2), None)), pytest.raises(RuntimeError, match="nthreads 1"):
        with cache.borrow(key, lambda: (torch.nn.Linear(2, 2), None)):
            pass


def test_with_model_released_takes_the_held_model_and_frees_it(tiny_gemma2_dir, tmp_path):
    language_model, layout = LocalModel(path=str(tiny_gemma2_dir), dtype="float32"), DataLayout(tmp_path / "data")
    key = ModelKey.of(str(tiny_gemma2_dir), "float32", "cpu")
    MODELS.release()
    loads = MODELS.loads
    try:
        with MODELS.borrow(key, lambda: language_model.load(layout, "cpu")) as (model, _):
            held = weakref.ref(model)
        del model
        facts = with_model_released(
            language_model, layout, "cpu", lambda m, _t: (m is held(), m.config.num_hidden_layers)
        )
        assert facts == (True, 4) and MODELS.loads == loads + 1, "taken from the cache, not loaded again"
        assert MODELS.held is None and _gone(held), "freed before with_model_released returned"
    finally:
        MODELS.release()
