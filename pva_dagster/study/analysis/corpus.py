"""Offline text corpora and the residual-stream activations a model produces on them.

Two uses: the embedded profile trains its SAEs on residuals over Python source (the standard library's own
``.py`` files, present on every machine) and at the readout token of study prompts, and Phase 2 measures how
often each latent fires on general English prose (one random token position per document, as the original study
sampled pile-10k) to drop latents that fire on everything.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sysconfig
import tokenize
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from pva_dagster.study.domain import DEFAULT_SEED
from pva_dagster.study.generation.residual import decoder_blocks, record_block_outputs, validate_layers

T = TypeVar("T")

DEFAULT_CODE_FILES = 200
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


# The Debian package ``fortunes`` (installed by ``make install``): thousands of short English texts by many
# authors, in many registers. The files about computing (and ASCII art) are left out, so that a latent that
# fires on talk of code is not dropped as "general".
FORTUNES_PACKAGE = "fortunes"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
_FORTUNES_SKIPPED = frozenset(
    {"art", "ascii-art", "computers", "debian", "linux", "linuxcookie", "perl", "translate-me"}
)


def fortunes_corpus(folder: Path = FORTUNES_DIR) -> list[str]:
    """Every text of the ``fortunes`` package's English files (``%``-separated), in file and then text order."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist: the general-text corpus is the Debian package {FORTUNES_PACKAGE!r}; "
            f"`make install` installs it as root, otherwise run `apt-get install {FORTUNES_PACKAGE}`"
        )
    texts = []
    for path in sorted(folder.iterdir()):
        if path.suffix or path.name in _FORTUNES_SKIPPED or not path.is_file():
            continue  # .dat indexes, .u8 links, and the skipped topics
        body = path.read_text(encoding="utf-8", errors="replace")
        texts += [text.strip() for text in body.split("\n%\n") if text.strip()]
    return texts


def package_version(package: str) -> str:
    """The installed Debian version of ``package`` (recorded beside the corpus' hash)."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=True
        )
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"cannot read the installed version of the Debian package {package!r}: {error}") from error
    return done.stdout.strip()


def corpus_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts (each length-prefixed, so boundaries count), to record which corpus was read."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


CORPORA: dict[str, Callable[[], list[str]]] = {
    "fortunes": fortunes_corpus,
    "stdlib_code": lambda: stdlib_code_corpus(DEFAULT_CODE_FILES, DEFAULT_SEED),
}
# The Debian package each corpus comes from, for its version in the metadata (None: shipped with Python).
CORPUS_PACKAGES: dict[str, str | None] = {"fortunes": FORTUNES_PACKAGE, "stdlib_code": None}


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


def _batches(items: Iterator[T], batch_size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _bos_and_pad(tokenizer: Any) -> tuple[int, int]:
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    if bos is None or pad is None:
        raise ValueError(f"the tokenizer needs a BOS and a pad token (bos={bos}, pad={pad})")
    return bos, pad


def _forward_with_bos(
    model: Any, batch: Sequence[list[int]], layers: Sequence[int], bos: int, pad: int
) -> tuple[dict[int, list[torch.Tensor]], torch.Tensor]:
    """Run the base model (no vocabulary logits) on BOS + each row, right-padded; the block outputs and mask."""
    return _forward_right_padded(model, [[bos, *chunk] for chunk in batch], layers, pad)


def _forward_right_padded(
    model: Any, batch: Sequence[list[int]], layers: Sequence[int], pad: int
) -> tuple[dict[int, list[torch.Tensor]], torch.Tensor]:
    """Run the base model (no vocabulary logits) on each row of ids, right-padded; the block outputs and mask.

    Right padding keeps every row's positions at 0..len-1, so a row's residuals do not depend on the others'.
    """
    device = next(model.parameters()).device
    width = max(len(row_ids) for row_ids in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, row_ids in enumerate(batch):
        ids[row, : len(row_ids)] = torch.tensor(row_ids)
        mask[row, : len(row_ids)] = 1
    with record_block_outputs(model, layers) as recorded, _stop_after_block(model, max(layers)):
        try:
            model.model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
        except _LastBlockReached:
            pass
    return recorded, mask


class _LastBlockReached(Exception):
    """Raised by the hook on the last block read: the blocks above it and the final norm need not run."""


@contextmanager
def _stop_after_block(model: Any, layer: int) -> Iterator[None]:
    """End the forward pass once block ``layer`` has run (TransformerLens's ``stop_at_layer``, for a Hugging Face
    model). The blocks below compute exactly what they would in a full pass, so the residuals read are the same
    bit for bit; the embedded profile reads layers up to 24 of 30, so a sixth of the corpus forward is saved."""

    def hook(_module: Any, _inputs: object, _output: object) -> None:
        raise _LastBlockReached

    handle = decoder_blocks(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


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
    bos, pad = _bos_and_pad(tokenizer)
    d_model = int(model.config.hidden_size)
    # Filled in place: concatenating per-batch pieces would hold every layer's residuals twice at the end.
    out = {layer: torch.empty(max_tokens, d_model, dtype=torch.float32) for layer in layers}
    filled = 0
    for batch in _batches(_chunks(tokenizer, texts, context_len - 1), batch_size):
        recorded, mask = _forward_with_bos(model, batch, layers, bos, pad)
        keep = mask.bool()
        keep[:, 0] = False
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


@torch.no_grad()
def sample_position_residuals(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    n_documents: int,
    context_len: int,
    batch_size: int,
    seed: int,
) -> dict[int, torch.Tensor]:
    """Block outputs ``{layer: float32 CPU tensor[n_documents, d_model]}`` at one random token per document.

    ``n_documents`` texts are drawn with ``seed``; in each, one position among its first ``context_len - 1``
    tokens is drawn with the same generator (after a BOS token, never the BOS itself), as the original study
    read one random position of each pile-10k document. The model sees the text only up to that position: a
    causal model's residual there does not depend on what follows. Prefixes are batched shortest first, so a
    batch pads to little more than its own lengths (drawn at random, they would pad to about twice the tokens);
    rows come back in draw order.
    """
    if not 1 <= n_documents <= len(texts) or context_len < 2 or batch_size < 1:
        raise ValueError(
            f"need 1 <= n_documents <= {len(texts)} texts, context_len >= 2, batch_size >= 1; "
            f"got {n_documents}, {context_len}, {batch_size}"
        )
    layers = validate_layers(model, layers)
    bos, pad = _bos_and_pad(tokenizer)
    rng = random.Random(seed)
    prefixes = []
    for text in rng.sample(list(texts), n_documents):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: context_len - 1]
        if not ids:
            raise ValueError(f"a general-text document produced no tokens: {text[:60]!r}")
        prefixes.append(ids[: rng.randrange(len(ids)) + 1])
    d_model = int(model.config.hidden_size)
    out = {layer: torch.empty(n_documents, d_model, dtype=torch.float32) for layer in layers}
    by_length = sorted(range(n_documents), key=lambda i: len(prefixes[i]))  # stable: ties keep draw order
    for indices in _batches(iter(by_length), batch_size):
        recorded, mask = _forward_with_bos(model, [prefixes[i] for i in indices], layers, bos, pad)
        last = mask.sum(dim=1) - 1  # each row's sampled position (its last real token)
        rows = torch.arange(len(indices))
        for layer in layers:
            out[layer][indices] = recorded[layer][0].to("cpu", torch.float32)[rows, last]
    return out


@torch.no_grad()
def collect_readout_residuals(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    positions: int,
    max_prompt_tokens: int,
    batch_size: int,
) -> dict[int, torch.Tensor]:
    """Block outputs ``{layer: float32 CPU tensor[rows, d_model]}`` at the last ``positions`` tokens of each prompt.

    Each prompt is encoded as Phase 1 encodes it (the tokenizer's special tokens, the last ``max_prompt_tokens``
    tokens kept), so its last row is the residual Phase 1 stores for the task; rows run prompt by prompt, the
    last token first (a prompt shorter than ``positions`` gives all its tokens).
    """
    if not prompts or positions < 1 or max_prompt_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"need prompts and positions, max_prompt_tokens, batch_size >= 1; got {len(prompts)} prompts, "
            f"{positions}, {max_prompt_tokens}, {batch_size}"
        )
    layers = validate_layers(model, layers)
    _, pad = _bos_and_pad(tokenizer)
    encoded = [tokenizer(prompt)["input_ids"][-max_prompt_tokens:] for prompt in prompts]
    if not all(encoded):
        raise ValueError("a prompt produced no tokens")
    pieces: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        recorded, mask = _forward_right_padded(model, batch, layers, pad)
        lengths = mask.sum(dim=1)
        for layer in layers:
            hidden = recorded[layer][0].to("cpu", torch.float32)
            for row, length in enumerate(lengths.tolist()):
                last = torch.arange(length - 1, max(length - positions, 0) - 1, -1)
                pieces[layer].append(hidden[row, last])
    return {layer: torch.cat(rows) for layer, rows in pieces.items()}
