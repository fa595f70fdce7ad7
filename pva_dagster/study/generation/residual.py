"""Reading and writing the residual stream of a Hugging Face decoder with forward hooks.

Read point: the **output of decoder block L**, i.e. TransformerLens ``blocks.{L}.hook_resid_post``, which is
what a GemmaScope ``layer_{L}`` SAE was trained on. (The seed study hooked the block's *input*, one layer off.)
Steering may add at any of TransformerLens's three residual-stream points of block L (:data:`HOOK_POINTS`):
``resid_pre`` (the block's input), ``resid_mid`` (after attention, before the MLP) or ``resid_post`` (the
block's output, the default). Every Llama-family and Gemma-2 model in transformers keeps its blocks at
``model.model.layers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM (``model.model.layers``); raises if the model has none."""
    base = getattr(model, "model", None)
    blocks = getattr(base, "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no decoder blocks at model.model.layers")
    return blocks


# TransformerLens's residual-stream hook points of a block, in forward order: ``blocks.{L}.hook_{point}``.
HookPoint = Literal["resid_pre", "resid_mid", "resid_post"]
HOOK_POINTS: tuple[HookPoint, ...] = ("resid_pre", "resid_mid", "resid_post")
RESID_POST: HookPoint = "resid_post"  # where Phase 1 reads and the SAEs were trained

# resid_mid is resid_pre plus what attention writes to the residual, and no Hugging Face module outputs it.
# Adding to the output of the block submodule whose output is that write (``residual + output`` in the
# decoder layer's forward) makes the residual variable resid_mid + v, which the MLP reads (through its norm)
# and the block's last add carries on to resid_post and beyond: TransformerLens's resid_mid + v.
#   llama:  h = residual + self_attn(input_layernorm(x))[0]                (LlamaDecoderLayer.forward)
#   gemma2: h = residual + post_attention_layernorm(self_attn(...)[0])     (Gemma2DecoderLayer.forward;
#           Gemma 2 normalises the attention output before the add, so the norm's output is the write)
RESID_MID_WRITERS: dict[str, str] = {"llama": "self_attn", "gemma2": "post_attention_layernorm"}


def check_point(point: str) -> HookPoint:
    """``point`` if it is one of :data:`HOOK_POINTS`; raises naming them otherwise."""
    for known in HOOK_POINTS:
        if point == known:
            return known
    raise ValueError(f"unknown residual hook point {point!r}; choose from {list(HOOK_POINTS)}")


def hook_name(layer: int, point: HookPoint = RESID_POST) -> str:
    """The TransformerLens name of a residual hook point of block ``layer``, as SAELens configs record it."""
    return f"blocks.{layer}.hook_{check_point(point)}"


def resid_mid_writer(model: nn.Module, layer: int) -> nn.Module:
    """The submodule of block ``layer`` whose output, added to the residual, makes resid_mid
    (:data:`RESID_MID_WRITERS`); raises naming the model type if it is not one of those checked."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in RESID_MID_WRITERS:
        raise ValueError(
            f"resid_mid is not mapped for model type {model_type!r}; supported: {sorted(RESID_MID_WRITERS)}"
        )
    return getattr(decoder_blocks(model)[layer], RESID_MID_WRITERS[model_type])


def validate_layers(model: nn.Module, layers: Sequence[int]) -> list[int]:
    """Return ``layers`` sorted and de-duplicated; raise naming any layer the model does not have."""
    n_layers = len(decoder_blocks(model))
    bad = [layer for layer in layers if not 0 <= int(layer) < n_layers]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has {n_layers} blocks (0..{n_layers - 1})")
    if not layers:
        raise ValueError("at least one layer is required")
    return sorted({int(layer) for layer in layers})


def block_hidden(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    # Decoder blocks return a tensor in transformers 5 and a tuple (hidden, ...) in older releases.
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def record_block_outputs(
    model: nn.Module, layers: Sequence[int]
) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the output of each listed block on every forward call, detached, in call order.

    Yields ``{layer: [tensor[batch, seq, d_model] per forward call]}``. During ``generate`` the first call is
    the prompt prefill; later calls are one new token each.
    """
    blocks = decoder_blocks(model)
    recorded: dict[int, list[torch.Tensor]] = {layer: [] for layer in validate_layers(model, layers)}

    def make_hook(layer: int):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
            recorded[layer].append(block_hidden(output).detach())

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in recorded]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


class RowSteering:
    """Vectors added at one hook point of blocks: ``vectors[layer]`` is ``[rows, d_model]``, one per row (zero
    rows leave a row as it was: ``x + 0.0`` is ``x``), or ``[d_model]``, the same for every row. When the decode
    loop drops finished rows it calls :meth:`keep`, so each remaining row keeps its own vector."""

    def __init__(self, vectors: Mapping[int, torch.Tensor]):
        self.current = dict(vectors)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the rows where ``rows`` (bool ``[rows]``) is true, in order."""
        self.current = {
            layer: vectors[rows.to(vectors.device)] if vectors.ndim == 2 else vectors
            for layer, vectors in self.current.items()
        }

    def add(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden[rows, seq, d_model]`` plus the current vector of ``layer`` at every position."""
        vector = self.current[layer].to(device=hidden.device, dtype=hidden.dtype)
        return hidden + (vector if vector.ndim == 1 else vector[:, None, :])


@contextmanager
def add_per_row(
    model: nn.Module, vectors: Mapping[int, torch.Tensor], point: HookPoint = RESID_POST
) -> Iterator[RowSteering]:
    """Add ``vectors[layer]`` (per row, or one for all rows: :class:`RowSteering`) to the residual stream at
    ``point`` of block ``layer`` (TransformerLens ``blocks.{layer}.hook_{point}``) at every position while the
    context is open; yields the :class:`RowSteering` the decode loop narrows as rows finish.

    ``resid_pre``: the block's input hidden states (a forward pre-hook on the block); ``resid_mid``: the output
    of the submodule that writes attention's result to the residual (:data:`RESID_MID_WRITERS`);
    ``resid_post``: the block's output.
    """
    point = check_point(point)
    blocks = decoder_blocks(model)
    steering = RowSteering(vectors)

    def output_hook(layer: int):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor | tuple[torch.Tensor, ...]):
            added = steering.add(layer, block_hidden(output))
            return (added, *output[1:]) if isinstance(output, tuple) else added

        return hook

    def input_hook(layer: int):
        # Decoder layers are called with the hidden states first and positionally (LlamaModel, Gemma2Model);
        # the keyword is handled for callers that name it.
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
            if args:
                return (steering.add(layer, args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": steering.add(layer, kwargs["hidden_states"])}

        return hook

    handles = []
    try:
        for layer in validate_layers(model, list(vectors)):
            if point == "resid_pre":
                handles.append(blocks[layer].register_forward_pre_hook(input_hook(layer), with_kwargs=True))
            else:
                target = blocks[layer] if point == RESID_POST else resid_mid_writer(model, layer)
                handles.append(target.register_forward_hook(output_hook(layer)))
        yield steering
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def add_at(model: nn.Module, layer: int, vector: torch.Tensor, point: HookPoint = RESID_POST) -> Iterator[None]:
    """Add ``vector[d_model]`` to the residual stream at ``point`` of block ``layer`` at every position while the
    context is open (:func:`add_per_row` with one vector for every row: the hook batched steering uses)."""
    with add_per_row(model, {layer: vector}, point):
        yield


@contextmanager
def record_first_call_last_position(
    model: nn.Module, layers: Sequence[int]
) -> Iterator[dict[int, torch.Tensor]]:
    """Record each listed block's output at the last position of its first forward call only.

    Yields ``{layer: tensor[batch, d_model]}``, filled by the first call (the prefill of ``generate``, whose
    last position is every left-padded row's last prompt token). Each hook removes itself after that call, so
    the decode steps run without hooks and nothing is kept per step.
    """
    blocks = decoder_blocks(model)
    recorded: dict[int, torch.Tensor] = {}
    handles: dict[int, RemovableHandle] = {}

    def make_hook(layer: int):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
            recorded[layer] = block_hidden(output)[:, -1, :].detach().clone()  # clone: free the [batch, seq, d]
            handles.pop(layer).remove()

        return hook

    for layer in validate_layers(model, layers):
        handles[layer] = blocks[layer].register_forward_hook(make_hook(layer))
    try:
        yield recorded
    finally:
        for handle in handles.values():
            handle.remove()
