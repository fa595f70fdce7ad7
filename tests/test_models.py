"""Loading models: the embedded GGUF conversion, local folders vs hub ids, the tiny Gemma 2."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from pva_dagster.resources.language_model import LocalModel
from pva_dagster.study.generation.model_loading import (
    CPU_BF16_FLAGS,
    choose_dtype,
    convert_gguf_to_safetensors,
    cpu_flags,
    load_causal_lm,
    locate_embedded_gguf,
    model_fingerprint,
    stop_token_ids,
)

PROMPT = (
    "Write a function add_numbers(a, b) that returns the sum of a and b.\n\nassert add_numbers(1, 2) == 3"
)


@pytest.fixture(scope="module")
def gguf_tensors():
    return gguf.GGUFReader(locate_embedded_gguf()).tensors  # memory-mapped; parsed once


@pytest.mark.parametrize(
    ("gguf_name", "hf_name"),
    [
        ("token_embd.weight", "model.embed_tokens.weight"),  # Q8_0
        ("blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"),  # Q4_1
        ("blk.29.attn_norm.weight", "model.layers.29.input_layernorm.weight"),  # F32
    ],
)
def test_converted_weights_equal_the_dequantised_gguf_tensors(
    embedded_model_dir, gguf_tensors, gguf_name, hf_name
):
    """Checked against the gguf library's own de-quantisation, independently of transformers' GGUF loader."""
    (tensor,) = [t for t in gguf_tensors if t.name == gguf_name]
    expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    with safe_open(embedded_model_dir / "model.safetensors", framework="np") as weights:
        np.testing.assert_array_equal(weights.get_tensor(hf_name), expected)


@pytest.mark.slow
def test_converted_embedded_model_matches_the_gguf_load(embedded_model_dir):
    """Same logits as transformers' own GGUF load (~20 s more: the GGUF is de-quantised once again)."""
    gguf = locate_embedded_gguf()
    reference_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    model, tokenizer = load_causal_lm(str(embedded_model_dir))
    ids = tokenizer(PROMPT, return_tensors="pt")
    assert ids["input_ids"].tolist() == reference_tokenizer(PROMPT, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected, got = reference(**ids).logits, model(**ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not hasattr(model.config, "quantization_config")


def test_embedded_model_stops_on_both_end_tokens(embedded_model_dir):
    generation_config = json.loads((embedded_model_dir / "generation_config.json").read_text())
    model, tokenizer = load_causal_lm(str(embedded_model_dir))
    assert tokenizer.convert_ids_to_tokens(sorted(generation_config["eos_token_id"])) == [
        "<|endoftext|>",
        "<|im_end|>",
    ]
    assert stop_token_ids(model, tokenizer) == [0, 2]
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert model_fingerprint(model) == {
        "architecture": "llama",
        "dtype": "float32",
        "n_layers": 30,
        "d_model": 576,
        "vocab": 49152,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    assert not model.training


def test_conversion_is_idempotent_and_redoes_a_half_written_folder(embedded_model_dir, tmp_path):
    before = (embedded_model_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf_to_safetensors(locate_embedded_gguf(), embedded_model_dir) == embedded_model_dir
    assert (embedded_model_dir / "model.safetensors").stat().st_mtime_ns == before
    # A folder with a config but no weights (an interrupted copy by hand) is not taken as done; the GGUF path
    # is checked before any work.
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        convert_gguf_to_safetensors(tmp_path / "missing.gguf", half)


def test_missing_local_path_is_named_and_not_sent_to_the_hub(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_causal_lm(str(missing))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data/models/absent"):
        load_causal_lm("data/models/absent")  # relative, three parts: a folder, not org/name
    with pytest.raises(ValueError, match="float8"):
        load_causal_lm(str(tmp_path), dtype="float8")


def test_uncached_hub_id_fails_with_the_id_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="'no-such-org/no-such-model' as a Hugging Face hub id"):
        load_causal_lm("no-such-org/no-such-model")


def test_tiny_gemma2_loads_through_the_same_path(tiny_gemma2_dir):
    model, tokenizer = load_causal_lm(str(tiny_gemma2_dir))
    assert type(model).__name__ == "Gemma2ForCausalLM"
    fingerprint = model_fingerprint(model)
    assert fingerprint["architecture"] == "gemma2" and fingerprint["vocab"] == len(tokenizer)
    assert fingerprint["n_layers"] == 4 and fingerprint["d_model"] == 64
    assert stop_token_ids(model, tokenizer) == [tokenizer.eos_token_id]
    encoded = tokenizer(["def f(x):\n    return x", "import os"], return_tensors="pt", padding=True)
    assert encoded["input_ids"][1, 0].item() == tokenizer.pad_token_id  # left padding
    with torch.no_grad():
        logits = model(**encoded).logits
    assert logits.shape == (2, encoded["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


X86_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_vnni avx512_bf16\nbugs\t\t: spectre\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sha2 bf16 i8mm\n"


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo():
    assert {"avx512_bf16", "avx512_vnni", "sse2"} <= cpu_flags(X86_CPUINFO)
    assert "spectre" not in cpu_flags(X86_CPUINFO)  # "bugs" is not a feature line
    assert "bf16" in cpu_flags(ARM_CPUINFO)


def test_auto_dtype_is_bfloat16_only_where_the_cpu_computes_it_natively():
    assert choose_dtype("auto", "cpu", cpu_flags(X86_CPUINFO))[0] == "bfloat16"
    assert choose_dtype("auto", "cpu", cpu_flags(ARM_CPUINFO))[0] == "bfloat16"
    dtype, why = choose_dtype("auto", "cpu", {"fpu", "sse2", "avx2", "avx512f"})
    assert dtype == "float32" and "emulated" in why
    assert choose_dtype("float16", "cpu", set()) == ("float16", "set explicitly")
    with pytest.raises(ValueError, match="'float8'"):
        choose_dtype("float8", "cpu")
    # and on this machine, from its own /proc/cpuinfo
    native = set(CPU_BF16_FLAGS) & cpu_flags()
    assert choose_dtype("auto", "cpu")[0] == ("bfloat16" if native else "float32")


def test_the_dtype_is_part_of_the_model_fingerprint(tiny_gemma2_dir):
    """Records and steering units are keyed by the model's fingerprint: one made in float32 is not resumed by
    a run in bfloat16. Loaded for real through the resource, in both dtypes."""
    prints = {}
    for dtype in ("float32", "bfloat16"):
        model, _ = LocalModel(path=str(tiny_gemma2_dir), dtype=dtype).load(layout=None, device="cpu")  # type: ignore[arg-type]
        assert next(model.parameters()).dtype == getattr(torch, dtype)
        prints[dtype] = model_fingerprint(model)
    assert prints["float32"]["dtype"] == "float32" and prints["bfloat16"]["dtype"] == "bfloat16"
    assert {k: v for k, v in prints["float32"].items() if k != "dtype"} == {
        k: v for k, v in prints["bfloat16"].items() if k != "dtype"
    }
