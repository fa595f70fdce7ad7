"""Steering: the vector and its hook on a real (tiny, random-weight) Llama, coefficient modes, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import beta
from transformers import LlamaConfig, LlamaForCausalLM

from pva_dagster.study.residual import add_to_block_output, decoder_blocks
from pva_dagster.study.steering import (
    COEFFICIENT_MODES,
    DEFAULT_RELATIVE_GRID,
    binomial_vs_control,
    code_similarity,
    mean_residual_norm,
    random_control_latents,
    resolve_coefficients,
    steered,
    steering_vector,
    transition_rates,
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
    assert steered is add_to_block_output


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
    assert set(COEFFICIENT_MODES) == {"relative", "absolute"}
    assert DEFAULT_RELATIVE_GRID.tolist() == pytest.approx([-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match=r"'percent'.*\['absolute', 'relative'\]"):
        resolve_coefficients("percent", [1.0], mean_norm)
    with pytest.raises(ValueError, match="mean residual norm"):
        resolve_coefficients("relative", [1.0], 0.0)
    with pytest.raises(ValueError, match="shape"):
        mean_residual_norm(np.zeros(4))


def test_transition_rates_on_a_hand_built_example():
    before = np.array([False, False, False, False, True, True, True, True, True])
    after = np.array([True, False, True, False, True, True, True, False, True])
    rates = transition_rates(before, after)
    assert rates["n_incorrect"] == 4 and rates["n_correct"] == 5
    assert rates["n_corrected"] == 2 and rates["n_corrupted"] == 1
    assert rates["correction_rate"] == pytest.approx(2 / 4)
    assert rates["corruption_rate"] == pytest.approx(1 / 5)
    assert rates["preservation_rate"] == pytest.approx(4 / 5)
    only_incorrect = transition_rates(np.array([False, False]), np.array([True, False]))
    assert only_incorrect["correction_rate"] == 0.5
    assert math.isnan(only_incorrect["corruption_rate"]) and math.isnan(only_incorrect["preservation_rate"])
    with pytest.raises(ValueError, match="3 problems but after_correct has 2"):
        transition_rates(np.array([True, False, True]), np.array([True, False]))


def test_code_similarity():
    code = "def f(x):\n    return x + 1\n"
    assert code_similarity(code, code) == 1.0
    assert code_similarity("abc", "xyz") == 0.0
    assert 0.5 < code_similarity(code, code.replace("+ 1", "+ 2")) < 1.0


def test_random_controls_are_seeded_sorted_and_exclude_the_target():
    controls = random_control_latents(1000, exclude=[7], n=5, seed=3)
    assert controls == random_control_latents(1000, exclude=[7], n=5, seed=3)
    assert controls != random_control_latents(1000, exclude=[7], n=5, seed=4)
    assert controls == sorted(controls) and len(set(controls)) == 5
    assert 7 not in controls and all(0 <= c < 1000 for c in controls)
    assert random_control_latents(4, exclude=[0, 2], n=2, seed=0) == [1, 3]
    with pytest.raises(ValueError, match="cannot draw 3"):
        random_control_latents(4, exclude=[0, 2], n=3, seed=0)
    with pytest.raises(ValueError, match=r"\[9\] are outside 0..3"):
        random_control_latents(4, exclude=[9], n=1, seed=0)


def _upper_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize(("successes", "trials", "control_rate"), [(7, 20, 0.1), (0, 12, 0.3), (12, 12, 0.5)])
def test_binomial_test_matches_the_tail_and_clopper_pearson(successes, trials, control_rate):
    result = binomial_vs_control(successes, trials, control_rate)
    assert result["p_value"] == pytest.approx(_upper_tail(successes, trials, control_rate), rel=1e-9)
    assert result["rate"] == successes / trials
    # Clopper-Pearson from its beta-quantile definition; the bound is 0 / 1 at the extremes.
    low = beta.ppf(0.025, successes, trials - successes + 1) if successes else 0.0
    high = beta.ppf(0.975, successes + 1, trials - successes) if successes < trials else 1.0
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), rel=1e-6)


def test_binomial_test_at_degenerate_control_rates_and_errors():
    assert binomial_vs_control(1, 10, 0.0)["p_value"] == 0.0
    assert binomial_vs_control(0, 10, 0.0)["p_value"] == 1.0
    assert binomial_vs_control(3, 10, 1.0)["p_value"] == 1.0
    with pytest.raises(ValueError, match="trials"):
        binomial_vs_control(0, 0, 0.5)
    with pytest.raises(ValueError, match="successes"):
        binomial_vs_control(11, 10, 0.5)
    with pytest.raises(ValueError, match="control_rate"):
        binomial_vs_control(1, 10, float("nan"))
