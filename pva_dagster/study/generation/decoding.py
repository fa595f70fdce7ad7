"""The decode loop of Phase 1: one prefill per prompt, then one token a step for the rows still running.

Why not ``model.generate``: there, a row that has finished keeps decoding (pad tokens) until the batch's last
row stops, and on the embedded run barely half the row-steps were useful. Here a finished row leaves the KV
cache, the attention mask and the inputs at once, so a step costs what its live rows cost. The samples of a
prompt share its prefill: the cache is expanded to ``repeats`` rows per prompt after the prompt is read.

Greedy decoding takes the argmax of the fp32 logits, as ``generate`` does, with the same position ids (from
the attention mask, for left padding) and the same mask; only the batch shapes of the matmuls change as rows
leave, which changes no token in exact arithmetic (bench/generation.py compares the outputs).

Sampling is pure temperature sampling (no top-k / top-p), softmax in fp32. Each row draws one uniform a step
from its own ``torch.Generator`` (seeded by the caller from the prompt's seed and the sample index) and takes
the token where it falls in the cumulative distribution, so a row's draws depend on nothing else in its batch:
not on which prompts share it, not on rows leaving, not on the batch size. A resumed run or another batch size
gives the same samples, as long as float rounding of the batched forward does not move a draw across a
boundary of the cumulative distribution (a near-tie, as for greedy).

Forward hooks on the decoder blocks run on every call (the prefill and each step): steering hooks keep
working; the residual recorder removes itself after the prefill.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from transformers import DynamicCache

from pva_dagster.study.generation.prompts import function_end_reached


@lru_cache(maxsize=8)
def newline_token_mask(tokenizer: Any) -> torch.Tensor:
    """[len(tokenizer)] bool: which token ids decode to text containing a newline.

    A newline is one byte (0x0A) that no multi-byte character can contain, so a completion gains a line only
    when a token whose own decoding holds ``\n`` is appended (byte-level BPE and SentencePiece byte fallback
    alike). Special tokens are included too, which can only cause an extra check, never a missed one.
    """
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor(["\n" in piece for piece in pieces], dtype=torch.bool)


class FunctionEndRule:
    """Has a completion written a complete function and moved on to something else?

    ``function_end_reached`` judges closed lines only and, once true, stays true as lines are appended, so the
    verdict can change only at a step that appends a newline token: only those rows are decoded (about once per
    line instead of once per token), and a row whose verdict turns true is finished for good.
    """

    def __init__(self, tokenizer: Any, newline_mask: torch.Tensor | None = None):
        self.tokenizer = tokenizer
        self.newline_mask = newline_token_mask(tokenizer) if newline_mask is None else newline_mask

    def closes_line(self, tokens: torch.Tensor) -> torch.Tensor:
        """[rows] bool for the token each row just appended ([rows] ids): may it have closed a line?"""
        tokens = tokens.cpu()
        size = len(self.newline_mask)
        # ids past the tokenizer (padded embedding rows) cannot be looked up: check them
        return torch.where(tokens < size, self.newline_mask[tokens.clamp(max=size - 1)], True)

    def reached(self, completions: Sequence[Sequence[int]]) -> list[bool]:
        texts = self.tokenizer.batch_decode([list(c) for c in completions], skip_special_tokens=True)
        return [function_end_reached(text) for text in texts]


# Names the sampling scheme in the fingerprint of sampled records (solutions.run_solutions): change it with the
# scheme, so records drawn another way are generated again rather than mixed.
SAMPLER = "inverse-cdf, one float64 uniform per step from torch.Generator(row_generator(prompt_seed, sample))"


def row_generator(prompt_seed: int, sample: int) -> torch.Generator:
    """The random stream of one sample of one prompt: a function of the two numbers alone."""
    # SplitMix-style mixing keeps (seed, sample) pairs apart; a torch seed takes 64 bits.
    mixed = (int(prompt_seed) * 0x9E3779B97F4A7C15 + int(sample) * 0xBF58476D1CE4E5B9) % 2**64
    return torch.Generator(device="cpu").manual_seed(mixed)


def sample_tokens(logits: torch.Tensor, temperature: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """[rows] token ids drawn from softmax(logits[rows, vocab] / temperature), one uniform per row's generator.

    Inverse CDF: the first token whose cumulative probability exceeds the row's uniform (a zero-probability
    token is never taken). The sums are in float64 so 49k-256k small probabilities add up without drift.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.double().cumsum(dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    targets = (uniforms.to(cdf.device) * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, targets, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


def _forward(model: Any, keep_last: bool, **inputs: Any) -> torch.Tensor:
    """[rows, vocab] fp32 logits of each row's last position."""
    extra = {"logits_to_keep": 1} if keep_last else {}
    output = model(**inputs, use_cache=True, **extra)
    return output.logits[:, -1].float()


def _accepts_logits_to_keep(model: Any) -> bool:
    # As generate: compute vocabulary logits for the last position only (the prefill's [rows, seq, vocab]
    # would be hundreds of MB for nothing).
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: set[int],
    function_end: FunctionEndRule | None = None,
    repeats: int = 1,
    temperature: float = 0.0,
    generators: Sequence[torch.Generator] | None = None,
    on_keep: Callable[[torch.Tensor], None] | None = None,
) -> list[list[int]]:
    """New tokens of each row: ``repeats`` rows per prompt of the left-padded ``input_ids`` [prompts, seq].

    Rows come prompt-major (prompt 0's repeats first). A row ends at a token in ``stop_ids`` (not part of its
    tokens), when ``function_end`` says its function is complete (the token that closed the line is kept), or
    after ``max_new_tokens``. ``temperature`` 0 is greedy; otherwise ``generators`` holds one per row.
    ``on_keep`` is told which rows stay (bool ``[rows]``) each time finished rows leave the batch (per-row
    steering narrows its vectors with it).
    """
    n_rows = input_ids.shape[0] * repeats
    sampling = temperature > 0
    if sampling and (generators is None or len(generators) != n_rows):
        raise ValueError(f"sampling {n_rows} rows needs one generator per row, got {generators and len(generators)}")
    keep_last = _accepts_logits_to_keep(model)
    # As generate: positions count real tokens (pad positions get 0), and a mask of ones is left out.
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    mask = None if bool((attention_mask == 1).all()) else attention_mask
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    logits = _forward(
        model, keep_last, input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache
    )
    next_position = positions[:, -1] + 1
    if repeats > 1:  # the samples share the prefill
        cache.batch_repeat_interleave(repeats)
        logits, next_position = logits.repeat_interleave(repeats, 0), next_position.repeat_interleave(repeats, 0)
        mask = None if mask is None else mask.repeat_interleave(repeats, 0)
    live = list(range(n_rows))  # the output row of each cache row
    completions: list[list[int]] = [[] for _ in range(n_rows)]
    for step in range(max_new_tokens):
        if sampling:
            assert generators is not None
            tokens = sample_tokens(logits, temperature, [generators[row] for row in live])
        else:
            tokens = logits.argmax(dim=-1)
        chosen = tokens.tolist()
        done = [token in stop_ids for token in chosen]
        for row, token, stop in zip(live, chosen, done, strict=True):
            if not stop:
                completions[row].append(token)
        if function_end is not None:
            check = [i for i, closed in enumerate(function_end.closes_line(tokens).tolist()) if closed and not done[i]]
            for i, ended in zip(check, function_end.reached([completions[live[i]] for i in check]), strict=True):
                done[i] = ended
        if step == max_new_tokens - 1 or all(done):
            break
        if any(done):  # finished rows leave the cache, the mask and the inputs
            keep = torch.tensor([not d for d in done])
            cache.batch_select_indices(keep.nonzero().flatten().to(tokens.device))
            if on_keep is not None:
                on_keep(keep)
            keep = keep.to(tokens.device)
            live = [row for row, d in zip(live, done, strict=True) if not d]
            tokens, next_position = tokens[keep], next_position[keep]
            mask = None if mask is None else mask[keep]
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        logits = _forward(
            model, keep_last, input_ids=tokens[:, None], attention_mask=mask,
            position_ids=next_position[:, None], cache=cache,
        )
        next_position = next_position + 1
    return completions
