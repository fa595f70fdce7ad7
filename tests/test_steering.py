"""Steering: the vector and its hook on a real (tiny, random-weight) Llama, coefficient modes, controls."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from pva_dagster.study.generation.residual import HOOK_POINTS, add_at, decoder_blocks, hook_name
from pva_dagster.study.steering.vectors import (
    COEFFICIENT_MODES,
    CoefficientMode,
    code_similarity,
    mean_residual_norm,
    python_tokens,
    resolve_coefficients,
    steered,
    steering_vector,
)

PROMPT = torch.tensor([[1, 5, 9, 13, 17, 21]])


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=None, pad_token_id=0,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _greedy(model: LlamaForCausalLM, n: int = 6) -> list[int]:
    with torch.no_grad():
        out = model.generate(PROMPT, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, PROMPT.shape[1]:].tolist()


def _logits(model: LlamaForCausalLM) -> torch.Tensor:
    with torch.no_grad():
        return model(PROMPT).logits


def test_steered_is_the_residual_hook():
    assert steered is add_at


def test_a_large_vector_takes_over_greedy_generation(tiny_llama):
    before = _greedy(tiny_llama)
    # Steer along the unembedding row of a token the unsteered model does not write: with a vector far larger
    # than the residual stream, the final norm sees (almost) only that direction, so that token wins.
    target = next(t for t in range(2, 64) if t not in before)
    decoder_row = tiny_llama.lm_head.weight[target].detach() * 3.7  # not unit norm: steering_vector normalises
    vector = steering_vector(decoder_row, 500.0)
    assert torch.linalg.vector_norm(vector).item() == pytest.approx(500.0, rel=1e-5)
    with steered(tiny_llama, 0, vector):
        after = _greedy(tiny_llama)
    assert after != before
    assert after == [target] * len(after)


def test_zero_scale_reproduces_the_logits_and_the_hook_goes_away(tiny_llama):
    reference = _logits(tiny_llama)
    row = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with steered(tiny_llama, 1, steering_vector(row, 0.0)):
        assert torch.equal(_logits(tiny_llama), reference)
    with steered(tiny_llama, 1, steering_vector(row, 50.0)):
        assert not torch.allclose(_logits(tiny_llama), reference)
        assert len(decoder_blocks(tiny_llama)[1]._forward_hooks) == 1
    assert all(len(block._forward_hooks) == 0 for block in decoder_blocks(tiny_llama))
    assert torch.equal(_logits(tiny_llama), reference)
    with pytest.raises(RuntimeError, match="boom"), steered(tiny_llama, 0, steering_vector(row, 50.0)):
        raise RuntimeError("boom")
    assert torch.equal(_logits(tiny_llama), reference)
    with pytest.raises(ValueError, match=r"layers \[2\]"), steered(tiny_llama, 2, row):
        pass


def _hook_count(model: LlamaForCausalLM) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("point", HOOK_POINTS)
def test_every_hook_point_adds_while_open_and_goes_away(tiny_llama, point):
    reference, before = _logits(tiny_llama), _hook_count(tiny_llama)
    row = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with add_at(tiny_llama, 1, steering_vector(row, 0.0), point):
        assert torch.equal(_logits(tiny_llama), reference)
    with add_at(tiny_llama, 1, steering_vector(row, 50.0), point):
        assert not torch.allclose(_logits(tiny_llama), reference)
        assert _hook_count(tiny_llama) == before + 1
    assert _hook_count(tiny_llama) == before
    with pytest.raises(RuntimeError, match="boom"), add_at(tiny_llama, 0, steering_vector(row, 50.0), point):
        raise RuntimeError("boom")
    assert _hook_count(tiny_llama) == before and torch.equal(_logits(tiny_llama), reference)
    assert hook_name(3, point) == f"blocks.3.hook_{point}"


def test_resid_mid_of_an_unmapped_model_type_and_an_unknown_point_are_named():
    config = MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    mistral, vector = MistralForCausalLM(config).eval(), torch.ones(32)
    with pytest.raises(ValueError, match=r"model type 'mistral'.*\['gemma2', 'llama'\]"):
        with add_at(mistral, 0, vector, "resid_mid"):
            pass
    assert _hook_count(mistral) == 0
    for point in ("resid_pre", "resid_post"):  # the block's own input and output need no mapping
        with add_at(mistral, 0, vector, point):
            assert _hook_count(mistral) == 1
    with pytest.raises(ValueError, match="unknown residual hook point 'hook_resid_mid'"):
        hook_name(0, "hook_resid_mid")  # type: ignore[arg-type]


def test_steering_vector_direction_sign_and_errors():
    row = torch.tensor([3.0, 0.0, 4.0])
    assert torch.allclose(steering_vector(row, 10.0), torch.tensor([6.0, 0.0, 8.0]))
    assert torch.allclose(steering_vector(row, -5.0), torch.tensor([-3.0, 0.0, -4.0]))
    assert steering_vector(row.to(torch.bfloat16), 1.0).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="norm 0"):
        steering_vector(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="one \\[d_model\\] row"):
        steering_vector(torch.ones(2, 3), 1.0)


def test_coefficient_modes_and_residual_norm():
    residuals = np.array([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]])  # row norms 5, 0, 10
    mean_norm = mean_residual_norm(residuals)
    assert mean_norm == pytest.approx((5 + 0 + 10) / 3)
    assert resolve_coefficients("relative", [-1.0, 0.0, 0.5], mean_norm) == pytest.approx(
        [-mean_norm, 0.0, 0.5 * mean_norm]
    )
    assert resolve_coefficients("absolute", [29.0, 287.0], mean_norm) == [29.0, 287.0]
    assert set(COEFFICIENT_MODES) == set(get_args(CoefficientMode)) == {"relative", "absolute"}
    with pytest.raises(ValueError, match=r"'percent'.*\['absolute', 'relative'\]"):
        resolve_coefficients("percent", [1.0], mean_norm)
    with pytest.raises(ValueError, match="mean residual norm"):
        resolve_coefficients("relative", [1.0], 0.0)
    with pytest.raises(ValueError, match="shape"):
        mean_residual_norm(np.zeros(4))


def test_code_similarity_compares_python_tokens():
    code = "def f(x):\n    return x + 1\n"
    assert code_similarity(code, code) == 1.0
    # Layout and comments are not code: the same tokens compare equal, where characters would not.
    assert code_similarity(code, "def f(x):\n  # add one\n  return x+1\n") == 1.0
    # A renamed variable is one token per use, however long the new name is.
    renamed = code.replace("x", "a_much_longer_name")
    assert code_similarity(code, renamed) == pytest.approx(2 * 8 / 20)  # 10 tokens each, 8 shared
    assert python_tokens("def f(x):\n    return (x +") == ["def", "f", "(", "x", ")", ":", "return", "(", "x", "+"]
    assert code_similarity("abc", "xyz") == 0.0


