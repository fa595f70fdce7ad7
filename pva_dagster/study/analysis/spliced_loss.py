"""What an SAE's reconstruction costs the model: next-token loss with the SAE spliced into the residual stream.

SAELens reports an SAE's fidelity the same way (``ce_loss_score``): the model's mean next-token cross-entropy
on some text clean, with one block's output replaced by the SAE's reconstruction, and with it replaced by zeros;
``loss_recovered`` = (zero-ablated − spliced) / (zero-ablated − clean) is 1 when the reconstruction loses nothing
the later layers use and 0 when it is as bad as no residual at all. SAELens computes it on a TransformerLens
model; the study's models run through Hugging Face, so the splice here is a forward hook on the decoder block
(the same residual the study reads: the block's output, TransformerLens's ``hook_resid_post``).

The text is the study's own prompts, encoded as Phase 1 encodes them. The first position is never spliced: it is
the attention sink, whose residual has an outsized norm and is left out of the SAEs' training data, so splicing
it would measure a token the SAE was never asked to represent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from pva_dagster.study.generation.residual import block_hidden, decoder_blocks, validate_layers

SPLICED_LOSS_COLUMNS: tuple[str, ...] = (
    "layer", "loss_prompts", "loss_tokens", "loss_clean", "loss_spliced", "loss_zero_ablated", "loss_recovered",
)
LOSS_BATCH = 8


@contextmanager
def _replaced_block_output(model: Any, layer: int, replace: Any) -> Iterator[None]:
    """Block ``layer``'s output passes through ``replace(hidden) -> hidden`` (positions 1.. only)."""

    def hook(_module: Any, _inputs: object, output: Any) -> Any:
        hidden = block_hidden(output)
        changed = hidden.clone()
        changed[:, 1:] = replace(hidden[:, 1:])
        return (changed, *output[1:]) if isinstance(output, tuple) else changed

    handle = decoder_blocks(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _reconstruct(sae: Any) -> Any:
    def replace(hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1]).to(sae.W_dec.device, torch.float32)
        return sae.decode(sae.encode(flat)).reshape(hidden.shape).to(hidden.device, hidden.dtype)

    return replace


@torch.no_grad()
def _mean_loss(model: Any, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean next-token cross-entropy over every real (unpadded) target token of the batches."""
    total, count = 0.0, 0
    for ids, mask in batches:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum",
                                       ignore_index=-100))  # fmt: skip
        count += int((targets != -100).sum())
    if count == 0:
        raise ValueError("the prompts hold no next token to predict")
    return total / count


def _batches(
    tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int, device: Any
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The prompts encoded as Phase 1 encodes them (special tokens, the last ``max_prompt_tokens``), right-padded."""
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("the tokenizer needs a pad token")
    encoded = [tokenizer(prompt)["input_ids"][-max_prompt_tokens:] for prompt in prompts]
    batches = []
    for start in range(0, len(encoded), LOSS_BATCH):
        rows = encoded[start : start + LOSS_BATCH]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        batches.append((ids.to(device), mask.to(device)))
    return batches


def spliced_loss_table(
    model: Any, tokenizer: Any, saes: dict[int, Any], prompts: Sequence[str], max_prompt_tokens: int
) -> list[dict[str, float]]:
    """SPLICED_LOSS_COLUMNS per layer of ``saes`` (layer -> SAELens SAE) over ``prompts``."""
    if not prompts:
        raise ValueError("no prompts to measure the next-token loss on")
    layers = validate_layers(model, list(saes))
    device = next(model.parameters()).device
    batches = _batches(tokenizer, prompts, max_prompt_tokens, device)
    tokens = sum(int(mask[:, 1:].sum()) for _, mask in batches)
    clean = _mean_loss(model, batches)
    rows = []
    for layer in layers:
        with _replaced_block_output(model, layer, _reconstruct(saes[layer])):
            spliced = _mean_loss(model, batches)
        with _replaced_block_output(model, layer, torch.zeros_like):
            ablated = _mean_loss(model, batches)
        recovered = (ablated - spliced) / (ablated - clean) if ablated != clean else float("nan")
        rows.append({
            "layer": layer, "loss_prompts": len(prompts), "loss_tokens": tokens, "loss_clean": clean,
            "loss_spliced": spliced, "loss_zero_ablated": ablated, "loss_recovered": recovered,
        })
    return rows
