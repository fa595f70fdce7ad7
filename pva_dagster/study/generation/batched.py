"""Batched generation that records the residual stream at the last prompt token.

Batches are left-padded, so the last prompt token sits at position -1 of every row during the prefill (the
first forward call of the decode loop, ``decoding.decode``), which is where the activations are read. Sampling
puts ``batch_size // num_samples`` prompts with all their samples in one batch; each sample draws from its own
generator seeded by its prompt's seed and its index, so its tokens do not depend on the batching and a resumed
run (or one with another batch size) redraws the same samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pva_dagster.study.generation.decoding import FunctionEndRule, decode, row_generator
from pva_dagster.study.generation.residual import (
    RESID_POST,
    HookPoint,
    RowSteering,
    add_per_row,
    record_first_call_last_position,
    validate_layers,
)
from pva_dagster.study.generation.settings import GenerationSettings


@dataclass
class Generation:
    prompt_index: int
    sample: int
    completion: str  # decoded new tokens, special tokens dropped; may end with the line that stopped it
    n_prompt_tokens: int  # after truncation
    n_new_tokens: int  # tokens of the completion, the stop / pad tokens after it not counted
    prompt_truncated: bool
    seconds: float  # wall time of the batch, shared among its rows
    residuals: np.ndarray  # [n_layers, d_model] float32: last prompt token, output of each layer's block


def prompt_token_counts(tokenizer: Any, prompts: Sequence[str]) -> list[int]:
    """Tokens of each prompt as a batch encodes it (special tokens included), before truncation."""
    return [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]


def _encode(
    tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int, device: Any
) -> tuple[Any, list[bool]]:
    """Left-padded batch keeping each prompt's last ``max_prompt_tokens`` tokens; which prompts were cut."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    lengths = prompt_token_counts(tokenizer, prompts)
    encoded = tokenizer(
        list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=max_prompt_tokens
    ).to(device)
    return encoded, [n > max_prompt_tokens for n in lengths]


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: list[int],
    settings: GenerationSettings,
    stop_ids: set[int],
    indices: Sequence[int],
    function_end: FunctionEndRule | None,
    seeds: Sequence[int] | None,
    vectors: Mapping[int, torch.Tensor] | None = None,
    steering_point: HookPoint = RESID_POST,
) -> list[Generation]:
    """Generate for ``prompts`` (one batch); ``indices`` are their positions in the caller's list; ``vectors``:
    per layer, ``[prompts, d_model]`` added to each row's residual at ``steering_point`` (greedy only)."""
    started = time.perf_counter()
    encoded, truncated = _encode(tokenizer, prompts, settings.max_prompt_tokens, model.device)
    sampling = settings.temperature > 0
    repeats = settings.num_samples if sampling else 1
    generators = (
        [row_generator(seed, sample) for seed in seeds or [] for sample in range(repeats)] if sampling else None
    )
    # Hooks only for the prefill (they remove themselves); steering records no layers.
    recorder: AbstractContextManager[dict[int, torch.Tensor]] = (
        record_first_call_last_position(model, layers) if layers else nullcontext({})
    )
    steering: AbstractContextManager[RowSteering | None] = (
        add_per_row(model, vectors, steering_point) if vectors else nullcontext()
    )
    with torch.no_grad(), recorder as recorded, steering as rows:
        completions = decode(
            model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens=settings.max_new_tokens,
            stop_ids=stop_ids, function_end=function_end, repeats=repeats, temperature=settings.temperature,
            generators=generators, on_keep=rows.keep if rows is not None else None,
        )
    # [prompts, n_layers, d_model]: the samples of a prompt share its prefill, hence its residuals
    residuals = (
        torch.stack([recorded[layer] for layer in layers], dim=1).float().cpu().numpy()
        if layers
        else np.zeros((len(prompts), 0, model.config.hidden_size), dtype=np.float32)
    )
    seconds = time.perf_counter() - started
    n_prompt = encoded["attention_mask"].sum(dim=1).tolist()
    generations = []
    for row, tokens in enumerate(completions):
        prompt_row = row // repeats
        generations.append(
            Generation(
                prompt_index=indices[prompt_row],
                sample=row % repeats,
                completion=tokenizer.decode(tokens, skip_special_tokens=True),
                n_prompt_tokens=int(n_prompt[prompt_row]),
                n_new_tokens=len(tokens),
                prompt_truncated=truncated[prompt_row],
                seconds=seconds,
                residuals=residuals[prompt_row],
            )
        )
    return generations


def batch_order(
    tokenizer: Any, prompts: Sequence[str], per_batch: int, settings: GenerationSettings,
    blocks: Sequence[int] | None = None,
) -> list[list[int]]:
    """The prompt indices of each batch, in the order they run.

    In order of the prompts by default; with ``settings.sort_by_length``, longest (after truncation) first,
    ties in prompt order, so the longest batch runs first (an out-of-memory shows at once) and padding is
    small. Either way it is a function of the prompt list alone: after a crash, the prompts left are those
    of the batches not yet saved, and sorting them again re-forms exactly those batches.

    ``blocks`` (a block id per prompt, each block a run of consecutive prompts) keeps a block in one batch:
    batches take whole blocks up to ``per_batch`` rows (a larger block runs alone), so the rows of a block (the
    same problem steered several ways) share their batch and its padding.
    """
    if blocks is None:
        blocks = list(range(len(prompts)))
    runs: list[list[int]] = []
    for index, block in enumerate(blocks):
        if runs and blocks[runs[-1][0]] == block:
            runs[-1].append(index)
        else:
            runs.append([index])
    if settings.sort_by_length and len(prompts) > per_batch:
        lengths = [min(n, settings.max_prompt_tokens) for n in prompt_token_counts(tokenizer, prompts)]
        runs.sort(key=lambda run: -max(lengths[i] for i in run))  # stable: ties keep prompt order
    batches: list[list[int]] = []
    for run in runs:
        if batches and len(batches[-1]) + len(run) <= per_batch:
            batches[-1].extend(run)
        else:
            batches.append(list(run))
    return [sorted(batch) for batch in batches]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    settings: GenerationSettings,
    stop_token_ids: Sequence[int],
    seeds: Sequence[int] | None = None,
    row_vectors: Mapping[int, torch.Tensor] | None = None,
    blocks: Sequence[int] | None = None,
    steering_point: HookPoint = RESID_POST,
) -> Iterator[list[Generation]]:
    """Yield generations batch by batch, so the caller can label, save and log after each one.

    Greedy: ``batch_size`` prompts a batch. Sampling (temperature > 0): ``batch_size // num_samples`` prompts
    a batch (at least one), each with its ``num_samples`` samples; ``seeds`` (one per prompt) is required, and
    sample ``s`` of prompt ``i`` draws from ``row_generator(seeds[i], s)`` alone, so its tokens do not depend on
    the batch size or on which prompts share its batch (see ``decoding``): a resumed run redraws the same.
    ``layers`` may be empty (rows of shape [0, d_model]). Within a batch generations come in prompt order (the
    samples of a prompt in order); with ``settings.sort_by_length`` the batches do not. ``row_vectors``: per
    layer, ``[prompts, d_model]`` added to each prompt's residual at ``steering_point`` (TransformerLens's
    ``blocks.L.hook_{point}``; greedy only; zero rows are unsteered); ``blocks``: prompts kept in one batch
    (:func:`batch_order`).
    """
    layers = validate_layers(model, layers) if len(layers) else []
    if not stop_token_ids:
        raise ValueError("stop_token_ids is empty: generation would only ever stop at max_new_tokens")
    sampling = settings.temperature > 0
    if sampling and (seeds is None or len(seeds) != len(prompts)):
        got = "none" if seeds is None else len(seeds)
        raise ValueError(f"sampling needs one seed per prompt: {len(prompts)} prompts, seeds {got}")
    if sampling and row_vectors:
        raise ValueError("per-row steering vectors are for greedy generation only")
    per_batch = max(1, settings.batch_size // settings.num_samples) if sampling else settings.batch_size
    # A pad token ends a completion too (model.generate's output, before this loop, was cut at the first pad).
    stop_ids = {int(i) for i in stop_token_ids} | ({tokenizer.pad_token_id} - {None})
    function_end = FunctionEndRule(tokenizer) if settings.stop_at_function_end else None
    for indices in batch_order(tokenizer, prompts, per_batch, settings, blocks):
        batch_seeds = [int(seeds[i]) for i in indices] if seeds is not None and sampling else None
        vectors = {layer: v[indices] for layer, v in row_vectors.items()} if row_vectors else None
        yield _generate_batch(
            model, tokenizer, [prompts[i] for i in indices], layers, settings, stop_ids, indices, function_end,
            batch_seeds, vectors, steering_point,
        )


# Rows a batch on the CPU, measured with the decode loop (finished rows cost nothing) on the embedded
# SmolLM2-135M, 1 torch thread, 2 shared cores (load average ~3), 64 embedded prompts x <= 128 new tokens,
# function-end stop on, residuals of all 30 layers (bench/generation.py --baseline-ref none):
#   batch 16: 55.9 new tokens/s | 32: 74.5 (1.33x) | 64: 81.3 (1.45x)
# 32: 64 adds under a tenth more while a crash loses twice the rows, and an embedded partition (25 tasks)
# fits in one batch of 32 anyway.
CPU_BATCH_SIZE = 32
MAX_AUTO_BATCH_SIZE = 128
GPU_MEMORY_FRACTION = 0.7  # of the free memory, for the estimate's slack (allocator fragmentation, sampling)


def bytes_per_row(config: Any, n_tokens: int, dtype_bytes: int) -> int:
    """Upper estimate of the device memory one batch row needs to generate ``n_tokens`` (prompt + new).

    KV cache of every layer, plus the prefill's largest transients: the MLP activations, the attention
    scores of eager attention (fp32, heads x tokens^2; Gemma 2's soft-capping uses eager) and the fp32
    vocabulary logits of the last position.
    """
    text = getattr(config, "text_config", config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    kv_cache = 2 * text.num_hidden_layers * kv_heads * head_dim * n_tokens * dtype_bytes
    mlp = n_tokens * (3 * text.intermediate_size + 4 * text.hidden_size) * dtype_bytes
    attention = 2 * heads * n_tokens * n_tokens * 4
    logits = 2 * text.vocab_size * 4
    return kv_cache + mlp + attention + logits


def longest_prompt_tokens(tokenizer: Any, prompts: Sequence[str]) -> int:
    """Tokens of the longest prompt (``prompt_token_counts``): the prompt part of the token budget
    ``auto_batch_size`` sizes rows for. Measured over all of a partition's prompts, not those left after a
    crash, so a resumed partition gets the same batch size and re-forms the same batches."""
    return max(prompt_token_counts(tokenizer, prompts), default=1)


def auto_batch_size(model: Any, n_tokens: int, free_bytes: int | None = None) -> int:
    """Rows per batch for ``model`` on its device, from the device's free memory.

    CPU: ``CPU_BATCH_SIZE`` (measured). CUDA: ``GPU_MEMORY_FRACTION`` of the free memory (``free_bytes``, or
    ``torch.cuda.mem_get_info`` after the model is loaded) over ``bytes_per_row``, rounded down to a power of
    two, so small changes in free memory between a run and its resume give the same batches, and capped at
    ``MAX_AUTO_BATCH_SIZE``.
    """
    device = torch.device(model.device)
    if free_bytes is None:
        if device.type != "cuda":
            return CPU_BATCH_SIZE
        free_bytes, _total = torch.cuda.mem_get_info(device)
    dtype_bytes = next(model.parameters()).element_size()
    rows = int(GPU_MEMORY_FRACTION * free_bytes) // bytes_per_row(model.config, n_tokens, dtype_bytes)
    if rows < 1:
        return 1
    return min(MAX_AUTO_BATCH_SIZE, 1 << (rows.bit_length() - 1))
