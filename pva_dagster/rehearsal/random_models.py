"""Random-weight models of the real study's architecture (Gemma 2), built offline in seconds.

One builder, three shapes: tests use a tiny one to run the Gemma-2 code path that google/gemma-2-2b takes; the
generation benchmark and ``pva-check-gpu --gemma2-random`` use the full Gemma-2-2B shape on a GPU (same compute
as the real model, no download); the study rehearsal (``rehearsal/standins.py``) uses Gemma-2-2B's interface
(hidden size, number of blocks) with cheap insides.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, Gemma2Config, GemmaTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
TINY_GEMMA2 = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16, "max_position_embeddings": 1024, "sliding_window": 256,
}
# google/gemma-2-2b's shape (its config.json); its vocabulary size, for a random model of the full cost.
GEMMA2_2B_VOCAB = 256_000
GEMMA2_2B = {
    "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256, "max_position_embeddings": 8192, "sliding_window": 4096, "query_pre_attn_scalar": 256,
}


def _stdlib_sources(n_files: int) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(str(p) for p in stdlib.glob("*.py"))[:n_files]


def train_code_tokenizer(vocab_size: int = 1024, n_files: int = 8) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few standard-library source files (offline, seconds)."""
    files = _stdlib_sources(n_files)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train(files, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


def train_gemma_tokenizer(vocab_size: int = 1024, n_files: int = 8) -> GemmaTokenizer:
    """transformers' own ``GemmaTokenizer`` (what google/gemma-2-2b loads as) over a small vocabulary.

    Gemma's scheme: spaces become "▁", BPE with byte fallback (<0x00>..<0xFF> in the vocabulary), <bos> added;
    the merges are learnt here from a few standard-library files (offline, under a second).
    """
    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma's ids 0..4
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    trainer_tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=special)
    trainer_tokenizer.train(_stdlib_sources(n_files), trainer)
    state = json.loads(trainer_tokenizer.to_str())["model"]
    vocab = dict(state["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    # The stub says merges are 'a b' strings; GemmaTokenizer takes pairs too, as tokenizers' BPE state has them.
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)  # type: ignore[arg-type]


def random_gemma2(
    tokenizer: PreTrainedTokenizerFast,
    shape: dict[str, Any] = TINY_GEMMA2,
    seed: int = 0,
    vocab_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    **config: Any,
) -> Any:
    """A seeded random-weight ``Gemma2ForCausalLM`` of ``shape`` for ``tokenizer``, built on ``device``.

    ``vocab_size`` defaults to the tokenizer's; a larger one (Gemma-2-2B's 256,000) costs the real model's
    embedding and unembedding compute. ``config`` adds or overrides Gemma2Config fields.
    """
    vocab_size = vocab_size or len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    gemma_config = Gemma2Config(
        vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, **{**shape, **config},
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(gemma_config, dtype=dtype)
    return model.eval()


def build_random_gemma2(out_dir: Path, shape: dict[str, Any] = TINY_GEMMA2, seed: int = 0) -> Path:
    """Save a seeded random-weight Gemma 2 model and its tokenizer where ``from_pretrained`` loads them."""
    tokenizer = train_code_tokenizer()
    model = random_gemma2(tokenizer, shape, seed)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
