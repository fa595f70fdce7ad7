"""Batched generation with residual capture, on the embedded SmolLM2 and a tiny random Gemma 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config

from pva_dagster.rehearsal.random_models import GEMMA2_2B
from pva_dagster.study.generation.batched import (
    CPU_BATCH_SIZE,
    auto_batch_size,
    batch_order,
    bytes_per_row,
    generate,
    longest_prompt_tokens,
)
from pva_dagster.study.generation.decoding import FunctionEndRule
from pva_dagster.study.generation.model_loading import load_causal_lm, stop_token_ids
from pva_dagster.study.generation.prompts import build_prompt, extract_code, function_end_reached
from pva_dagster.study.generation.residual import add_at, decoder_blocks
from pva_dagster.study.generation.settings import GenerationSettings

PROMPTS = [
    build_prompt(
        "Write a function add_numbers(a, b) that returns the sum of a and b.",
        ["assert add_numbers(1, 2) == 3"],
    ),
    build_prompt(
        "Write a function square(n) that returns n multiplied by itself.", ["assert square(3) == 9"]
    ),
    build_prompt("Write a function is_even(n) that returns True when n is even.", ["assert is_even(4)"]),
    build_prompt("Write a python function to reverse a string.", ["assert reverse('ab') == 'ba'"]),
    build_prompt("Write a function cube(n).", ["assert cube(2) == 8"]),
    build_prompt(
        "Write a function to find the maximum of a list of numbers without using the built-in max.",
        ["assert find_max([1, 5, 3]) == 5", "assert find_max([-1, -2]) == -1"],
    ),
]


def run_all(*args, **kwargs):
    return [g for batch in generate(*args, **kwargs) for g in batch]


@pytest.fixture(scope="module")
def smollm(embedded_model_dir):
    return load_causal_lm(str(embedded_model_dir))


@pytest.fixture(scope="module")
def gemma(tiny_gemma2_dir):
    return load_causal_lm(str(tiny_gemma2_dir))


def test_embedded_model_writes_the_function_and_stops_after_it(smollm):
    model, tokenizer = smollm
    settings = GenerationSettings(max_new_tokens=64, batch_size=1)
    (generation,) = run_all(
        model, tokenizer, PROMPTS[:1], [5, 29], settings, stop_token_ids(model, tokenizer)
    )
    assert "def add_numbers(a, b):" in extract_code(generation.completion)
    assert generation.residuals.shape == (2, 576) and generation.residuals.dtype == np.float32
    assert generation.n_prompt_tokens == len(tokenizer(PROMPTS[0])["input_ids"])
    assert not generation.prompt_truncated
    assert 0 < generation.n_new_tokens < 64, generation.completion


def test_batched_greedy_equals_one_at_a_time(smollm):
    model, tokenizer = smollm
    stops, layers = stop_token_ids(model, tokenizer), [2, 17]
    one = run_all(
        model, tokenizer, PROMPTS, layers, GenerationSettings(max_new_tokens=16, batch_size=1), stops
    )
    batched = run_all(
        model, tokenizer, PROMPTS, layers, GenerationSettings(max_new_tokens=16, batch_size=4), stops
    )
    assert [g.prompt_index for g in batched] == list(range(len(PROMPTS)))
    assert [g.completion for g in batched] == [g.completion for g in one]
    assert [g.n_new_tokens for g in batched] == [g.n_new_tokens for g in one]
    for a, b in zip(one, batched, strict=True):
        np.testing.assert_allclose(b.residuals, a.residuals, rtol=1e-4, atol=1e-4)


def test_sorted_bigger_batches_give_the_greedy_output_of_one_at_a_time(smollm):
    """Phase 1's batching (sorted by prompt length, batches larger than before) changes no greedy output."""
    model, tokenizer = smollm
    stops, layers = stop_token_ids(model, tokenizer), [3, 29]
    one = run_all(model, tokenizer, PROMPTS, layers, GenerationSettings(max_new_tokens=40, batch_size=1), stops)
    for batch_size in (4, len(PROMPTS)):
        settings = GenerationSettings(max_new_tokens=40, batch_size=batch_size, sort_by_length=True)
        batches = list(generate(model, tokenizer, PROMPTS, layers, settings, stops))
        assert len(batches) == -(-len(PROMPTS) // batch_size)
        sorted_gens = sorted((g for batch in batches for g in batch), key=lambda g: g.prompt_index)
        assert [g.prompt_index for g in sorted_gens] == list(range(len(PROMPTS)))
        assert [g.completion for g in sorted_gens] == [g.completion for g in one]
        assert [g.n_new_tokens for g in sorted_gens] == [g.n_new_tokens for g in one]
        assert [g.n_prompt_tokens for g in sorted_gens] == [g.n_prompt_tokens for g in one]
        for a, b in zip(one, sorted_gens, strict=True):
            np.testing.assert_allclose(b.residuals, a.residuals, rtol=1e-4, atol=1e-4)
        # The longest prompt (PROMPTS[5], two asserts) runs in the first batch.
        assert 5 in [g.prompt_index for g in batches[0]]


def test_sorted_batches_are_re_formed_on_resume(gemma):
    """After the first batches are saved, sorting the prompts left gives exactly the batches not yet run."""
    _, tokenizer = gemma
    prompts = PROMPTS * 3  # ties in length: kept in prompt order
    settings = GenerationSettings(batch_size=4, sort_by_length=True)
    full = batch_order(tokenizer, prompts, 4, settings)
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    flat = [i for batch in full for i in batch]
    assert sorted(flat) == list(range(len(prompts)))
    assert max(lengths[i] for i in full[-1]) <= min(lengths[i] for i in full[0]), "longest batch first"
    done = {i for batch in full[:2] for i in batch}
    left = [i for i in range(len(prompts)) if i not in done]
    resumed = batch_order(tokenizer, [prompts[i] for i in left], 4, settings)
    assert [[left[j] for j in batch] for batch in resumed] == full[2:]
    unsorted = batch_order(tokenizer, prompts, 4, GenerationSettings(batch_size=4))
    assert unsorted == [list(range(s, min(s + 4, len(prompts)))) for s in range(0, len(prompts), 4)]


def test_batch_size_follows_free_memory_for_gemma2_2b():
    """The gemma profile's batch size, on the real Gemma-2-2B architecture (random, on the meta device)."""
    config = Gemma2Config(**GEMMA2_2B, vocab_size=256_000)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n_tokens = 2048 + 800
    per_row = bytes_per_row(model.config, n_tokens, 2)
    assert per_row > 2 * 26 * 4 * 256 * n_tokens * 2  # more than the bf16 KV cache of 26 layers alone
    sizes = [auto_batch_size(model, n_tokens, free_bytes=gib * 2**30) for gib in (0, 1, 20, 70, 130, 10_000)]
    assert sizes[0] == 1 and sizes == sorted(sizes) and sizes[-1] == 128
    assert all(size & (size - 1) == 0 for size in sizes), "powers of two"
    assert sizes[3] * per_row <= 0.7 * 70 * 2**30 < 2 * sizes[3] * per_row
    assert auto_batch_size(model, n_tokens, free_bytes=70 * 2**30) >= 16, "an H100 should not run at batch 8"


def test_batch_size_is_sized_for_the_longest_prompt_as_the_batch_encodes_it(smollm):
    """Phase 1 and steering size rows for their longest prompt, not the 2048-token prompt budget: on an H200's
    free memory (130 GiB) Gemma-2-2B then gets 128 rows where the whole budget gives 64 (both measured to fit on
    one: 18.5 and 11.4 GiB at peak, README)."""
    _, tokenizer = smollm
    prompts = list(PROMPTS)
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    assert longest_prompt_tokens(tokenizer, prompts) == int(encoded["attention_mask"].sum(dim=1).max())
    assert longest_prompt_tokens(tokenizer, prompts[:1]) == int(encoded["attention_mask"][0].sum())
    config = Gemma2Config(**GEMMA2_2B, vocab_size=256_000)
    with torch.device("meta"):
        gemma2 = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    h200 = 130 * 2**30
    assert auto_batch_size(gemma2, 2048 + 800, free_bytes=h200) == 64
    assert auto_batch_size(gemma2, 300 + 800, free_bytes=h200) == 128


def test_cpu_batch_size_is_the_measured_one(gemma):
    model, _ = gemma
    assert auto_batch_size(model, 128) == CPU_BATCH_SIZE


def test_incremental_stop_rule_agrees_with_decoding_every_step(smollm):
    """The stop rule decodes a row only when a newline token arrives; its verdicts at every step of a real
    decode equal those of decoding every row whole (the quadratic rule it replaces)."""
    model, tokenizer = smollm
    encoded = tokenizer(PROMPTS[:4], return_tensors="pt", padding=True)
    prompt_length = encoded["input_ids"].shape[1]
    with torch.no_grad():
        output = model.generate(
            **encoded, max_new_tokens=96, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    rule, stopped, verdicts = FunctionEndRule(tokenizer), [False] * output.shape[0], []
    for step in range(prompt_length + 1, output.shape[1] + 1):
        new = output[:, prompt_length:step]
        expected = [function_end_reached(text) for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
        check = [i for i, closed in enumerate(rule.closes_line(new[:, -1]).tolist()) if closed and not stopped[i]]
        for i, ended in zip(check, rule.reached(new[check].tolist()), strict=True):
            stopped[i] = ended
        assert stopped == expected, step
        verdicts.append(expected)
    assert any(verdicts[-1]) and not all(verdicts[0]), "the rows should stop part-way, not at once"


def test_residual_is_the_output_of_the_decoder_block(gemma):
    """blocks.L.hook_resid_post == hidden_states[L + 1] of a plain forward (what GemmaScope layer_L reads)."""
    model, tokenizer = gemma
    assert type(model).__name__ == "Gemma2ForCausalLM"
    (generation,) = run_all(
        model,
        tokenizer,
        PROMPTS[:1],
        [0, 2],
        GenerationSettings(max_new_tokens=3),
        stop_token_ids(model, tokenizer),
    )
    with torch.no_grad():
        hidden = model(**tokenizer(PROMPTS[:1], return_tensors="pt"), output_hidden_states=True).hidden_states
    expected = np.stack([hidden[1][0, -1].numpy(), hidden[3][0, -1].numpy()])
    np.testing.assert_allclose(generation.residuals, expected, rtol=1e-5, atol=1e-5)
    assert generation.residuals.shape == (2, model.config.hidden_size)


def test_left_padding_does_not_move_gemma2_residuals(gemma):
    model, tokenizer = gemma
    layers, stops = list(range(len(decoder_blocks(model)))), stop_token_ids(model, tokenizer)

    def residuals(batch_size: int) -> np.ndarray:
        settings = GenerationSettings(max_new_tokens=1, batch_size=batch_size)
        return np.stack([g.residuals for g in run_all(model, tokenizer, PROMPTS, layers, settings, stops)])

    alone, padded = residuals(1), residuals(len(PROMPTS))
    assert padded.shape == (len(PROMPTS), 4, 64)
    np.testing.assert_allclose(padded, alone, rtol=1e-4, atol=1e-5)


def test_sampling_is_reproducible_by_seed_and_on_resume(gemma):
    model, tokenizer = gemma
    # batch_size 6 with 3 samples: two prompts a batch
    settings = GenerationSettings(
        max_new_tokens=8, temperature=1.2, num_samples=3, batch_size=6, stop_at_function_end=False
    )
    stops = stop_token_ids(model, tokenizer)

    def run(prompts, seeds):
        return [g.completion for g in run_all(model, tokenizer, prompts, [1], settings, stops, seeds=seeds)]

    first, again = run(PROMPTS[:4], [7, 8, 9, 10]), run(PROMPTS[:4], [7, 8, 9, 10])
    other = run(PROMPTS[:4], [70, 8, 9, 10])
    assert len(first) == 12 and first == again
    assert first[:3] != other[:3] and first[3:] == other[3:], "a seed changes its own prompt's samples only"
    assert len(set(first[:3])) > 1, "three samples of one prompt should differ"
    assert run(PROMPTS[2:4], [9, 10]) == first[6:]  # a run resumed after the first batch redraws the rest
    assert run(PROMPTS[1:3], [8, 9]) == first[3:9], "batched with other prompts, a prompt draws the same"


@pytest.mark.parametrize("num_samples", [1, 3])
def test_seeded_samples_do_not_depend_on_the_batch_size(gemma, num_samples):
    """Each sample draws from its own generator: batches of 1 and 8 rows (rows leaving at different steps,
    the function-end rule on) give the same samples."""
    model, tokenizer = gemma
    stops, seeds = stop_token_ids(model, tokenizer), [11, 12, 13, 14, 15, 16]

    def run(batch_size: int) -> list[tuple[int, int, str]]:
        settings = GenerationSettings(
            max_new_tokens=24, temperature=0.9, num_samples=num_samples, batch_size=batch_size, sort_by_length=True
        )
        generations = run_all(model, tokenizer, PROMPTS, [], settings, stops, seeds=seeds)
        return sorted((g.prompt_index, g.sample, g.completion) for g in generations)

    alone, batched = run(1), run(8)
    assert len(alone) == len(PROMPTS) * num_samples
    assert batched == alone


def test_rows_that_finish_leave_the_batch_and_change_nothing(smollm):
    """A prompt that stops early next to one that runs to the cap: the batch shrinks to the live row, and
    each output equals that prompt's output alone."""
    model, tokenizer = smollm
    stops, prompts, cap = stop_token_ids(model, tokenizer), [PROMPTS[0], PROMPTS[5]], 64
    alone = [
        run_all(model, tokenizer, [p], [4], GenerationSettings(max_new_tokens=cap, batch_size=1), stops)[0]
        for p in prompts
    ]
    rows_per_call: list[int] = []
    hook = decoder_blocks(model)[0].register_forward_pre_hook(lambda _m, args: rows_per_call.append(args[0].shape[0]))
    try:
        together = run_all(model, tokenizer, prompts, [4], GenerationSettings(max_new_tokens=cap, batch_size=2), stops)
    finally:
        hook.remove()
    early, late = (g.n_new_tokens for g in together)
    assert early < cap == late, "the first prompt should stop at its function's end, the second run to the cap"
    assert rows_per_call[0] == 2 and rows_per_call.count(2) == early, "two rows until the first one finished"
    assert rows_per_call[early:] == [1] * (cap - early), "then one row alone"
    assert [g.completion for g in together] == [g.completion for g in alone]
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(b.residuals, a.residuals, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("point", ["resid_pre", "resid_mid"])
def test_per_row_vectors_at_another_hook_point_follow_their_rows_as_rows_leave(smollm, point):
    """Per-row vectors at resid_pre / resid_mid (not the block output): an unsteered prompt that stops early next
    to a steered one that runs on; once the first row leaves, the second keeps its own vector, so each equals
    its prompt alone under :func:`add_at` at that point."""
    model, tokenizer = smollm
    stops, prompts, cap, layer = stop_token_ids(model, tokenizer), [PROMPTS[0], PROMPTS[5]], 48, 12
    settings = GenerationSettings(max_new_tokens=cap, batch_size=2)
    vector = 6.0 * torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(5))
    row_vectors = {layer: torch.stack([torch.zeros_like(vector), vector])}  # row 0 unsteered
    together = run_all(
        model, tokenizer, prompts, [], settings, stops, row_vectors=row_vectors, steering_point=point
    )
    single = GenerationSettings(max_new_tokens=cap, batch_size=1)
    plain = [run_all(model, tokenizer, [p], [], single, stops)[0] for p in prompts]
    with add_at(model, layer, vector, point):
        steered_alone = run_all(model, tokenizer, prompts[1:], [], single, stops)[0]
    assert together[0].n_new_tokens < together[1].n_new_tokens, "the unsteered row must leave the batch first"
    assert together[0].completion == plain[0].completion
    assert steered_alone.completion != plain[1].completion, "the vector must change the steered row's tokens"
    assert together[1].completion == steered_alone.completion


def test_steering_hooks_apply_at_every_decode_step(gemma):
    """A steering hook registered for the whole generate call acts on the prefill and every decode step: the
    tokens equal those of ``model.generate`` under the same hook."""
    model, tokenizer = gemma
    stops, steps = stop_token_ids(model, tokenizer), 8
    vector = 40.0 * torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    settings = GenerationSettings(max_new_tokens=steps, stop_at_function_end=False)
    plain = run_all(model, tokenizer, PROMPTS[:1], [], settings, stops)[0]
    encoded = tokenizer(PROMPTS[:1], return_tensors="pt")
    with add_at(model, 1, vector):
        steered = run_all(model, tokenizer, PROMPTS[:1], [], settings, stops)[0]
        with torch.no_grad():
            reference = model.generate(
                **encoded, max_new_tokens=steps, do_sample=False, eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
    assert steered.completion != plain.completion
    new = reference[0, encoded["input_ids"].shape[1]:].tolist()
    new = new[: next((i for i, token in enumerate(new) if token in stops), len(new))]
    assert steered.n_new_tokens == len(new)
    assert steered.completion == tokenizer.decode(new, skip_special_tokens=True)


def test_long_prompts_keep_their_last_tokens(gemma):
    model, tokenizer = gemma
    settings = GenerationSettings(max_new_tokens=2, max_prompt_tokens=8, batch_size=2)
    short, long = run_all(
        model, tokenizer, ["def", PROMPTS[5]], [2], settings, stop_token_ids(model, tokenizer)
    )
    assert (short.prompt_truncated, long.prompt_truncated) == (False, True)
    assert long.n_prompt_tokens == 8
    tail = torch.tensor([tokenizer(PROMPTS[5])["input_ids"][-8:]])
    with torch.no_grad():
        hidden = model(input_ids=tail, output_hidden_states=True).hidden_states
    # hidden_states[L + 1] is block L's output (the last entry is after the final norm, so L < n_layers - 1)
    np.testing.assert_allclose(long.residuals, hidden[3][:, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_without_layers_no_residuals_are_kept(gemma):
    model, tokenizer = gemma
    (generation,) = run_all(model, tokenizer, PROMPTS[:1], [], GenerationSettings(max_new_tokens=2), [1])
    assert generation.residuals.shape == (0, 64)


def test_bad_inputs_are_named(gemma):
    model, tokenizer = gemma
    n_layers = len(decoder_blocks(model))
    with pytest.raises(ValueError, match=rf"\[{n_layers}\] do not exist"):
        run_all(model, tokenizer, PROMPTS[:1], [n_layers], GenerationSettings(max_new_tokens=2), [1])
    with pytest.raises(ValueError, match=r"\[-1\] do not exist"):
        run_all(model, tokenizer, PROMPTS[:1], [-1], GenerationSettings(max_new_tokens=2), [1])
    with pytest.raises(ValueError, match="batch_size"):
        GenerationSettings(batch_size=0)
    with pytest.raises(ValueError, match="num_samples"):
        GenerationSettings(num_samples=2)
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(temperature=-1.0)
    with pytest.raises(ValueError, match="one seed per prompt"):
        run_all(model, tokenizer, PROMPTS[:2], [0], GenerationSettings(temperature=0.5), [1], seeds=[1])
    with pytest.raises(ValueError, match="stop_token_ids"):
        run_all(model, tokenizer, PROMPTS[:1], [0], GenerationSettings(), [])
