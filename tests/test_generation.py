"""Model loading and batched generation with residual capture, on real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pva_dagster.study.generation import GenerationSettings, generate
from pva_dagster.study.models import load_causal_lm, model_fingerprint, stop_token_ids
from pva_dagster.study.prompts import build_prompt, extract_code
from pva_dagster.study.residual import decoder_blocks

PROMPTS = [
    build_prompt("Write a function add_numbers(a, b) that returns the sum of a and b.", ["assert add_numbers(1, 2) == 3"]),
    build_prompt("Write a function square(n) that returns n multiplied by itself.", ["assert square(3) == 9"]),
    build_prompt("Write a function is_even(n) that returns True when n is even.", ["assert is_even(4)"]),
    build_prompt("Write a python function to reverse a string.", ["assert reverse('ab') == 'ba'"]),
    build_prompt("Write a function cube(n).", ["assert cube(2) == 8"]),
]


@pytest.fixture(scope="module")
def smollm(embedded_model_dir):
    torch.set_num_threads(2)
    return load_causal_lm(str(embedded_model_dir))


def test_embedded_model_loads_offline_and_writes_python(smollm):
    model, tokenizer = smollm
    assert model_fingerprint(model)["n_layers"] == 30 and model_fingerprint(model)["d_model"] == 576
    assert stop_token_ids(model, tokenizer) == [0, 2]  # <|endoftext|> and <|im_end|>
    settings = GenerationSettings(max_new_tokens=40, batch_size=1)
    (generation,) = next(generate(model, tokenizer, PROMPTS[:1], [5], settings, stop_token_ids(model, tokenizer)))
    assert "def add_numbers" in extract_code(generation.completion)
    assert generation.residuals.shape == (1, 576)


def test_batched_greedy_equals_one_at_a_time(smollm):
    model, tokenizer = smollm
    stops, layers = stop_token_ids(model, tokenizer), [2, 17]
    one = [g for b in generate(model, tokenizer, PROMPTS, layers, GenerationSettings(max_new_tokens=24, batch_size=1), stops) for g in b]
    batched = [g for b in generate(model, tokenizer, PROMPTS, layers, GenerationSettings(max_new_tokens=24, batch_size=5), stops) for g in b]
    assert [g.completion for g in batched] == [g.completion for g in one]
    for a, b in zip(one, batched):
        np.testing.assert_allclose(a.residuals, b.residuals, rtol=1e-3, atol=1e-3)


def test_residual_is_the_output_of_the_decoder_block(tiny_gemma2_dir):
    """blocks.L.hook_resid_post == hidden_states[L + 1] of a plain forward (what a GemmaScope layer_L SAE reads)."""
    model, tokenizer = load_causal_lm(str(tiny_gemma2_dir))
    assert type(model).__name__ == "Gemma2ForCausalLM"
    prompt = PROMPTS[0]
    (generation,) = next(
        generate(model, tokenizer, [prompt], [0, 2], GenerationSettings(max_new_tokens=3), stop_token_ids(model, tokenizer))
    )
    with torch.no_grad():
        hidden = model(**tokenizer([prompt], return_tensors="pt"), output_hidden_states=True).hidden_states
    expected = np.stack([hidden[1][0, -1].numpy(), hidden[3][0, -1].numpy()])
    np.testing.assert_allclose(generation.residuals, expected, rtol=1e-5, atol=1e-5)
    assert generation.residuals.shape == (2, model.config.hidden_size)


def test_sampling_is_reproducible_by_seed(tiny_gemma2_dir):
    model, tokenizer = load_causal_lm(str(tiny_gemma2_dir))
    settings = GenerationSettings(max_new_tokens=12, temperature=1.2, num_samples=3, stop_at_function_end=False)
    stops = stop_token_ids(model, tokenizer)

    def run(seed):
        return [g.completion for b in generate(model, tokenizer, PROMPTS[:2], [1], settings, stops, seeds=[seed, seed + 1]) for g in b]

    first, again, other = run(7), run(7), run(8)
    assert len(first) == 6 and first == again
    assert first != other
    assert len(set(first[:3])) > 1, "three samples of one prompt should differ"


def test_bad_inputs_are_named(tiny_gemma2_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_causal_lm(str(tmp_path / "no_such_model"))
    model, tokenizer = load_causal_lm(str(tiny_gemma2_dir))
    n_layers = len(decoder_blocks(model))
    with pytest.raises(ValueError, match=rf"\[{n_layers}\] do not exist"):
        next(generate(model, tokenizer, PROMPTS[:1], [n_layers], GenerationSettings(max_new_tokens=2), [0]))
    with pytest.raises(ValueError, match="batch_size"):
        GenerationSettings(batch_size=0)
    with pytest.raises(ValueError, match="one seed per prompt"):
        next(generate(model, tokenizer, PROMPTS[:2], [0], GenerationSettings(temperature=0.5), [0]))
