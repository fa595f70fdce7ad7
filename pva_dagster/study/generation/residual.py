"""Reading and writing the residual stream of a Hugging Face decoder with forward hooks.

Hook point: the **output of decoder block L**, i.e. TransformerLens ``blocks.{L}.hook_resid_post``, which is
what a GemmaScope ``layer_{L}`` SAE was trained on. (The seed study hooked the block's *input*, one layer off.)
Every Llama-family and Gemma-2 model in transformers keeps its blocks at ``model.model.layers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

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


def hook_name(layer: int) -> str:
    """The TransformerLens name of the hook point read here, as SAELens configs record it."""
    return f"blocks.{layer}.hook_resid_post"


def validate_layers(model: nn.Module, layers: Sequence[int]) -> list[int]:
    """Return ``layers`` sorted and de-duplicated; raise naming any layer the model does not have."""
    n_layers = len(decoder_blocks(model))
    bad = [layer for layer in layers if not 0 <= int(layer) < n_layers]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has {n_layers} blocks (0..{n_layers - 1})")
    if not layers:
        raise ValueError("at least one layer is required")
    return sorted({int(layer) for layer in layers})


def _hidden(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
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
            recorded[layer].append(_hidden(output).detach())

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in recorded]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


class RowSteering:
    """Vectors added at block outputs: ``vectors[layer]`` is ``[rows, d_model]``, one per row (zero rows leave a
    row as it was: ``x + 0.0`` is ``x``), or ``[d_model]``, the same for every row. When the decode loop drops
    finished rows it calls :meth:`keep`, so each remaining row keeps its own vector."""

    def __init__(self, vectors: Mapping[int, torch.Tensor]):
        self.current = dict(vectors)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the rows where ``rows`` (bool ``[rows]``) is true, in order."""
        self.current = {
            layer: vectors[rows.to(vectors.device)] if vectors.ndim == 2 else vectors
            for layer, vectors in self.current.items()
        }


@contextmanager
def add_per_row(model: nn.Module, vectors: Mapping[int, torch.Tensor]) -> Iterator[RowSteering]:
    """Add ``vectors[layer]`` (per row, or one for all rows: :class:`RowSteering`) to the output of block
    ``layer`` at every position while the context is open; yields the :class:`RowSteering` the decode loop
    narrows as rows finish."""
    blocks = decoder_blocks(model)
    steering = RowSteering(vectors)

    def make_hook(layer: int):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor | tuple[torch.Tensor, ...]):
            hidden = _hidden(output)
            vector = steering.current[layer].to(device=hidden.device, dtype=hidden.dtype)
            added = vector if vector.ndim == 1 else vector[:, None, :]
            return (hidden + added, *output[1:]) if isinstance(output, tuple) else hidden + added

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in validate_layers(model, list(vectors))]
    try:
        yield steering
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def add_to_block_output(model: nn.Module, layer: int, vector: torch.Tensor) -> Iterator[None]:
    """Add ``vector[d_model]`` to the output of block ``layer`` at every position while the context is open
    (:func:`add_per_row` with one vector for every row: the hook batched steering uses)."""
    with add_per_row(model, {layer: vector}):
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
            recorded[layer] = _hidden(output)[:, -1, :].detach().clone()  # clone: free the [batch, seq, d]
            handles.pop(layer).remove()

        return hook

    for layer in validate_layers(model, layers):
        handles[layer] = blocks[layer].register_forward_hook(make_hook(layer))
    try:
        yield recorded
    finally:
        for handle in handles.values():
            handle.remove()
