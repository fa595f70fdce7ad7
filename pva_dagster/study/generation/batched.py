"""Batched generation that records the residual stream at the last prompt token.

Greedy batches are left-padded, so the last prompt token sits at position -1 of every row during the prefill
(the first forward call of ``generate``), which is where the activations are read. Sampling puts
``batch_size // num_samples`` prompts with all their samples in one batch, seeded from its first prompt, so a
run that re-forms the same batches (Phase 1 resumes whole batches) redraws exactly the same samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, cast

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from pva_dagster.study.generation.prompts import function_end_reached
from pva_dagster.study.generation.residual import (
    record_first_call_last_position,
    validate_layers,
)

# Rows per generate call when neither the configuration nor a loaded model chooses (see auto_batch_size).
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 800
    max_prompt_tokens: int = 2048  # longer prompts keep their last tokens (the asserts and "# Solution:")
    batch_size: int = DEFAULT_BATCH_SIZE  # rows per generate call: prompts when greedy, prompts x samples when sampling
    temperature: float = 0.0  # 0 = greedy
    num_samples: int = 1  # samples per prompt (sampling only)
    seed: int = 0  # recorded with the outputs; per-prompt sampling seeds come from the caller
    stop_at_function_end: bool = True
    # Batch prompts of similar token length together (longest first) so rows carry little padding; results
    # keep their prompt_index, and the batches depend only on the prompts, so a resumed run re-forms them.
    sort_by_length: bool = False

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_prompt_tokens", "batch_size", "num_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GenerationSettings.{name} must be an integer >= 1, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"GenerationSettings.temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.num_samples != 1:
            raise ValueError(
                f"GenerationSettings.num_samples={self.num_samples} needs temperature > 0 "
                "(greedy gives one sample)"
            )

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


@lru_cache(maxsize=8)
def newline_token_mask(tokenizer: Any) -> torch.Tensor:
    """[len(tokenizer)] bool: which token ids decode to text containing a newline.

    A newline is one byte (0x0A) that no multi-byte character can contain, so a completion gains a line only
    when a token whose own decoding holds ``\n`` is appended (byte-level BPE and SentencePiece byte fallback
    alike). Special tokens are included too, which can only cause an extra check, never a missed one.
    """
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor(["\n" in piece for piece in pieces], dtype=torch.bool)


class FunctionEndStop(StoppingCriteria):
    """Stops each row once its completion holds a complete function and has moved on to something else.

    ``function_end_reached`` judges closed lines only and, once true, stays true as lines are appended, so a
    row's verdict can change only at a step that appends a newline token: only those rows are decoded, and a
    stopped row is remembered. The verdicts are those of decoding every row at every step (the rule before
    this, quadratic in the completion length), at about one decode per line instead of one per token.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, newline_mask: torch.Tensor | None = None):
        self.tokenizer, self.prompt_length = tokenizer, prompt_length
        self.newline_mask = newline_token_mask(tokenizer) if newline_mask is None else newline_mask
        self.stopped: torch.Tensor | None = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        if self.stopped is None:
            self.stopped = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        last = input_ids[:, -1].cpu()
        known = last < len(self.newline_mask)  # ids past the tokenizer (padded embeddings): check them
        line_closed = torch.where(known, self.newline_mask[last.clamp(max=len(self.newline_mask) - 1)], True)
        rows = (line_closed & ~self.stopped).nonzero().flatten().tolist()
        if rows:
            texts = self.tokenizer.batch_decode(input_ids[rows, self.prompt_length :], skip_special_tokens=True)
            for row, text in zip(rows, texts, strict=True):
                self.stopped[row] = function_end_reached(text)
        return cast(torch.BoolTensor, self.stopped.to(input_ids.device, copy=True))


def _encode(
    tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int, device: Any
) -> tuple[Any, list[bool]]:
    """Left-padded batch keeping each prompt's last ``max_prompt_tokens`` tokens; which prompts were cut."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    encoded = tokenizer(
        list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=max_prompt_tokens
    ).to(device)
    return encoded, [n > max_prompt_tokens for n in lengths]


def _completion_length(new_tokens: list[int], stop_ids: set[int]) -> int:
    return next((i for i, token in enumerate(new_tokens) if token in stop_ids), len(new_tokens))


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: list[int],
    settings: GenerationSettings,
    stop_token_ids: Sequence[int],
    indices: Sequence[int],
    newline_mask: torch.Tensor | None = None,
) -> list[Generation]:
    """Generate for ``prompts`` (one batch); ``indices`` are their positions in the caller's list."""
    started = time.perf_counter()
    encoded, truncated = _encode(tokenizer, prompts, settings.max_prompt_tokens, model.device)
    prompt_length = encoded["input_ids"].shape[1]
    sampling = settings.temperature > 0
    repeats = settings.num_samples if sampling else 1
    # Hooks only for the prefill (they remove themselves); steering records no layers.
    recorder: AbstractContextManager[dict[int, torch.Tensor]] = (
        record_first_call_last_position(model, layers) if layers else nullcontext({})
    )
    with torch.no_grad(), recorder as recorded:
        criteria: list[StoppingCriteria] = []
        if settings.stop_at_function_end:
            criteria.append(FunctionEndStop(tokenizer, prompt_length, newline_mask))
        output = model.generate(
            **encoded,
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            # Pure temperature sampling: no top-k / top-p from the model's generation_config.
            temperature=settings.temperature if sampling else None,
            top_k=0 if sampling else None,
            top_p=1.0 if sampling else None,
            num_return_sequences=repeats,
            eos_token_id=list(stop_token_ids),
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList(criteria),
        )
        residuals = (
            torch.stack([recorded[layer] for layer in layers], dim=1).float().cpu().numpy()
            if layers
            else np.zeros((output.shape[0], 0, model.config.hidden_size), dtype=np.float32)
        )
    seconds = time.perf_counter() - started
    stops = {*stop_token_ids, tokenizer.pad_token_id}
    n_prompt = encoded["attention_mask"].sum(dim=1).tolist()
    generations = []
    for row, new in enumerate(output[:, prompt_length:].tolist()):
        n_new = _completion_length(new, stops)
        prompt_row = row // repeats
        generations.append(
            Generation(
                prompt_index=indices[prompt_row],
                sample=row % repeats,
                completion=tokenizer.decode(new[:n_new], skip_special_tokens=True),
                n_prompt_tokens=int(n_prompt[prompt_row]),
                n_new_tokens=n_new,
                prompt_truncated=truncated[prompt_row],
                seconds=seconds,
                residuals=residuals[row],
            )
        )
    return generations


def batch_order(
    tokenizer: Any, prompts: Sequence[str], per_batch: int, settings: GenerationSettings
) -> list[list[int]]:
    """The prompt indices of each batch, in the order they run.

    In order of the prompts by default; with ``settings.sort_by_length``, longest (after truncation) first,
    ties in prompt order, so the longest batch runs first (an out-of-memory shows at once) and padding is
    small. Either way it is a function of the prompt list alone: after a crash, the prompts left are those
    of the batches not yet saved, and sorting them again re-forms exactly those batches.
    """
    order = list(range(len(prompts)))
    if settings.sort_by_length and len(prompts) > per_batch:
        lengths = [min(len(ids), settings.max_prompt_tokens) for ids in tokenizer(list(prompts))["input_ids"]]
        order.sort(key=lambda i: -lengths[i])  # stable: ties keep prompt order
    return [sorted(order[start : start + per_batch]) for start in range(0, len(order), per_batch)]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    settings: GenerationSettings,
    stop_token_ids: Sequence[int],
    seeds: Sequence[int] | None = None,
) -> Iterator[list[Generation]]:
    """Yield generations batch by batch, so the caller can label, save and log after each one.

    Greedy: ``batch_size`` prompts a batch. Sampling (temperature > 0): ``batch_size // num_samples`` prompts
    a batch (at least one), each with its ``num_samples`` samples, after ``torch.manual_seed`` with the seed of
    the batch's first prompt (``seeds``, one per prompt, is required). A batch's samples therefore depend on
    which prompts share it; Phase 1 persists whole batches and re-forms the rest the same way (``batch_order``),
    so a resumed run redraws exactly the same samples. ``layers`` may be empty (rows of shape [0, d_model]).
    Within a batch generations come in prompt order; with ``settings.sort_by_length`` the batches do not.
    """
    layers = validate_layers(model, layers) if len(layers) else []
    if not stop_token_ids:
        raise ValueError("stop_token_ids is empty: generation would only ever stop at max_new_tokens")
    sampling = settings.temperature > 0
    if sampling and (seeds is None or len(seeds) != len(prompts)):
        got = "none" if seeds is None else len(seeds)
        raise ValueError(f"sampling needs one seed per prompt: {len(prompts)} prompts, seeds {got}")
    per_batch = max(1, settings.batch_size // settings.num_samples) if sampling else settings.batch_size
    newline_mask = newline_token_mask(tokenizer) if settings.stop_at_function_end else None
    for indices in batch_order(tokenizer, prompts, per_batch, settings):
        if sampling:
            assert seeds is not None  # sampling without seeds raised above
            torch.manual_seed(int(seeds[indices[0]]))
        batch = [prompts[i] for i in indices]
        yield _generate_batch(
            model, tokenizer, batch, layers, settings, stop_token_ids, indices, newline_mask
        )


# Rows a batch on the CPU (the embedded SmolLM2-135M on 2 cores): throughput per row keeps rising to 16 (notes:
# 37.7 new tokens/s at 8, 52.2 at 16) while a batch of 16 x 128 new tokens still takes well under a minute.
CPU_BATCH_SIZE = 16
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


def auto_batch_size(model: Any, n_tokens: int, free_bytes: int | None = None) -> int:
    """Rows per generate call for ``model`` on its device, from the device's free memory.

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
