"""The two small commands on real files and on this machine's real torch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.cli import check_gpu, clean_data, compare_runs


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "phase0").mkdir(parents=True)
    (data / "phase0" / "difficulty_mapping.parquet").write_bytes(b"x" * 2048)
    (data / "phase1_0" / "activations").mkdir(parents=True)
    (data / "phase1_0" / "dataset_0.parquet").write_bytes(b"y" * 4096)
    (data / "notes.txt").write_text("keep me?")
    return data


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("do not delete")
    return folder


def _entries(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_dry_run_lists_sizes_and_deletes_nothing(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _entries(data_dir)
    assert clean_data.main(["--data-dir", str(data_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "   4.0 KiB  phase1_0/\n" in out
        and "   2.0 KiB  phase0/\n" in out
        and "       8 B  notes.txt\n" in out
    )
    assert "would delete 3 entries (6.0 KiB)" in out
    assert _entries(data_dir) == before


def test_force_deletes_only_the_named_phase(data_dir: Path) -> None:
    assert clean_data.main(["--data-dir", str(data_dir), "--force", "phase1_0"]) == 0
    assert _entries(data_dir) == ["notes.txt", "phase0", "phase0/difficulty_mapping.parquet"]


def test_force_without_phases_empties_the_data_dir_but_keeps_it(data_dir: Path, outside: Path) -> None:
    (data_dir / "phase1_0" / "activations" / "escape").symlink_to(
        outside
    )  # nested link: removed, not followed
    assert clean_data.main(["--data-dir", str(data_dir), "--force"]) == 0
    assert data_dir.is_dir() and _entries(data_dir) == []
    assert (outside / "thesis.tex").read_text() == "do not delete"


def test_symlink_pointing_outside_is_refused(
    data_dir: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data_dir / "phase2").symlink_to(outside)
    before = _entries(data_dir)
    assert clean_data.main(["--data-dir", str(data_dir), "--force", "phase2"]) == 2
    assert clean_data.main(["--data-dir", str(data_dir), "--force"]) == 2
    assert "resolves to" in capsys.readouterr().err
    assert _entries(data_dir) == before
    assert (outside / "thesis.tex").read_text() == "do not delete"


@pytest.mark.parametrize("target", ["../precious", "..", ".", "phase0/../.."])
def test_targets_escaping_the_data_dir_are_refused(data_dir: Path, outside: Path, target: str) -> None:
    before = _entries(data_dir.parent)
    assert clean_data.main(["--data-dir", str(data_dir), "--force", target]) == 2
    assert _entries(data_dir.parent) == before


def test_data_dir_containing_the_project_is_refused(tmp_path: Path) -> None:
    assert clean_data.main(["--data-dir", str(clean_data.PROJECT_ROOT), "--force"]) == 2
    assert clean_data.main(["--data-dir", str(tmp_path / "missing"), "--force"]) == 2


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("\n", False), ("", False), ("y\n", True)])
def test_prompt_only_yes_deletes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, answer: str, deleted: bool
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    code = clean_data.main(["--data-dir", str(data_dir), "phase0"])
    assert code == (0 if deleted else 1)
    assert (data_dir / "phase0").exists() is not deleted
    assert (data_dir / "phase1_0" / "dataset_0.parquet").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU report")
def test_check_gpu_without_gpu_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_gpu.main([]) == 0
    assert "No CUDA GPU available" in capsys.readouterr().out
    assert check_gpu.main(["--require-gpu"]) == 1
    assert check_gpu.main(["--require-gpu", "--gemma2-random"]) == 1  # fails fast, builds nothing on the CPU


def test_mlp_forward_runs_on_cpu() -> None:
    assert check_gpu.mlp_forward(torch.device("cpu")) > 0


def _tiny_causal_lm(folder: Path) -> Path:
    """A seeded two-layer Llama with a word-level tokenizer, saved like any local Hugging Face model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "def", "add", "(", "a", ",", "b", ")", ":", "return"]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path of --model")
def test_check_gpu_runs_a_local_causal_lm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = _tiny_causal_lm(tmp_path / "tiny-lm")
    assert check_gpu.main(["--model", str(model_dir)]) == 0
    assert "cpu: tiny-lm: logits (1, 8, 10) in torch.float32, next token" in capsys.readouterr().out
    assert check_gpu.main(["--model", str(tmp_path / "absent")]) == 2


def test_compare_runs_finds_a_changed_value_and_ignores_timings(tmp_path: Path, capsys) -> None:
    for run in ("a", "b"):
        folder = tmp_path / run / "phase3" / "steering"
        folder.mkdir(parents=True)
        pd.DataFrame({"task_id": [1, 2], "passed": [True, False], "generation_seconds": [0.1, 0.2]}).to_parquet(
            folder / "unit.parquet"
        )
        (tmp_path / run / "phase3" / "report.md").write_text("# report\n")
    pd.DataFrame({"task_id": [1, 2], "passed": [True, False], "generation_seconds": [9.0, 9.0]}).to_parquet(
        tmp_path / "b" / "phase3" / "steering" / "unit.parquet"
    )
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "2 files compared: identical" in capsys.readouterr().out
    pd.DataFrame({"task_id": [1, 2], "passed": [True, True], "generation_seconds": [0.1, 0.2]}).to_parquet(
        tmp_path / "b" / "phase3" / "steering" / "unit.parquet"
    )
    (tmp_path / "b" / "phase3" / "extra.json").write_text("{}")
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "differs: phase3/steering/unit.parquet" in out and "only in" in out and "extra.json" in out


def test_compare_runs_golden_phases_compare_arrays_and_records_across_roots(tmp_path: Path, capsys) -> None:
    """Phase 1 records point at activation files by absolute path: equal runs in two folders still agree."""
    for run in ("a", "b"):
        folder = tmp_path / run / "phase1_0"
        (folder / "activations").mkdir(parents=True)
        np.savez(folder / "activations" / "1_layer_0.npz", residual=np.arange(4, dtype=np.float32))
        pd.DataFrame({
            "task_id": [1], "activation_files": [[str(folder / "activations" / "1_layer_0.npz")]],
            "generation_seconds": [1.0 if run == "a" else 2.0],
        }).to_parquet(folder / "dataset_0000-0024.parquet")
        (folder / "dataset_0000-0024_metadata.json").write_text(f'{{"device": "{run}"}}')
    golden = ["--phases", "phase0", "phase1_0"]
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), *golden]) == 0
    assert "2 files compared: identical" in capsys.readouterr().out
    np.savez(tmp_path / "b" / "phase1_0" / "activations" / "1_layer_0.npz", residual=np.ones(4, dtype=np.float32))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), *golden]) == 1
    assert "differs: phase1_0/activations/1_layer_0.npz" in capsys.readouterr().out
