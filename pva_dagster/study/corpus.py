"""Offline text corpora and the residual-stream activations a model produces on them.

Two uses: the embedded profile trains its SAEs on residuals over Python source (the standard library's own
``.py`` files, present on every machine), and Phase 2 measures how often each latent fires on general English
prose to drop latents that fire on everything.
"""

from __future__ import annotations

import random
import sysconfig
import tokenize
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from pva_dagster.study.residual import record_block_outputs, validate_layers

DEFAULT_CODE_FILES = 200
DEFAULT_SEED = 42
# Folders of the standard library that are not ordinary library code (test suites with deliberately odd
# encodings and syntax, vendored packages, IDLE's GUI) or not part of it at all.
_SKIPPED_PARTS = frozenset({"test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"})


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"the Python standard library folder {root} does not exist")
    files = [
        path for path in root.rglob("*.py")
        if not _SKIPPED_PARTS.intersection(path.relative_to(root).parts)
    ]
    # Sorted by relative path so the seeded choice below is the same on every machine with this Python.
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def stdlib_code_corpus(max_files: int, seed: int) -> list[str]:
    """Source text of ``max_files`` standard-library modules chosen with ``seed`` (non-empty files only)."""
    if max_files < 1:
        raise ValueError(f"max_files must be at least 1, got {max_files}")
    files = _stdlib_files()
    chosen = random.Random(seed).sample(files, min(max_files, len(files)))
    texts = []
    for path in chosen:
        with tokenize.open(path) as handle:  # honours each file's coding declaration
            text = handle.read()
        if text.strip():
            texts.append(text)
    return texts


def general_text_corpus() -> list[str]:
    """English prose: the Python reference manual's topic pages (``pydoc_data.topics``), one text per topic.

    Why this one: it ships inside every CPython, so it is available offline without a data set download, and it
    is mostly running English prose with little code, which is what a "fires on general text" filter needs. It is
    about programming, so a latent that fires on any talk of code is also (rightly) counted as unspecific.
    """
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics) if topics[name].strip()]


CORPORA: dict[str, Callable[[], list[str]]] = {
    "python_docs": general_text_corpus,
    "stdlib_code": lambda: stdlib_code_corpus(DEFAULT_CODE_FILES, DEFAULT_SEED),
}


def corpus_texts(name: str) -> list[str]:
    """The texts of the registered corpus ``name``; raises naming the known corpora when it is unknown."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}")
    return CORPORA[name]()


def _chunks(tokenizer: Any, texts: Sequence[str], body_len: int) -> Iterator[list[int]]:
    """Token ids of the texts cut into consecutive pieces of at most ``body_len`` tokens, in text order."""
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), body_len):
            yield ids[start : start + body_len]


def _batches(chunks: Iterator[list[int]], batch_size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def collect_residuals(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    context_len: int,
    max_tokens: int,
    batch_size: int,
) -> dict[int, torch.Tensor]:
    """Block outputs ``{layer: float32 CPU tensor[n_tokens, d_model]}`` over the texts, at most ``max_tokens``.

    Each text is cut into windows of ``context_len`` tokens: a BOS token and then ``context_len - 1`` text tokens.
    Every text position is kept; the BOS position is not (its residual is an attention sink with an outsized norm
    that says nothing about the text), nor is padding. Only the base model runs (``model.model``), so no
    vocabulary logits are computed. Collection stops as soon as ``max_tokens`` rows are filled.
    """
    if context_len < 2 or max_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"need context_len >= 2, max_tokens >= 1, batch_size >= 1; got {context_len}, {max_tokens}, {batch_size}"
        )
    layers = validate_layers(model, layers)
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    if bos is None or pad is None:
        raise ValueError(f"the tokenizer needs a BOS and a pad token (bos={bos}, pad={pad})")
    device = next(model.parameters()).device
    d_model = int(model.config.hidden_size)
    # Filled in place: concatenating per-batch pieces would hold every layer's residuals twice at the end.
    out = {layer: torch.empty(max_tokens, d_model, dtype=torch.float32) for layer in layers}
    filled = 0
    for batch in _batches(_chunks(tokenizer, texts, context_len - 1), batch_size):
        width = 1 + max(len(chunk) for chunk in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, chunk in enumerate(batch):  # right padding: positions stay 0..len-1 for every row
            ids[row, : 1 + len(chunk)] = torch.tensor([bos, *chunk])
            mask[row, : 1 + len(chunk)] = 1
        keep = mask.bool()
        keep[:, 0] = False
        with record_block_outputs(model, layers) as recorded:
            model.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        take = min(int(keep.sum()), max_tokens - filled)
        for layer in layers:
            hidden = recorded[layer][0].to("cpu", torch.float32)[keep]
            out[layer][filled : filled + take] = hidden[:take]
        filled += take
        if filled == max_tokens:
            break
    if filled == 0:
        raise ValueError("the texts produced no tokens")
    # A slice would keep the whole max_tokens buffer alive; copy only when the texts ran out first.
    return {layer: tensor if filled == max_tokens else tensor[:filled].clone() for layer, tensor in out.items()}
