"""The pieces of the study stand-ins (``rehearsal/hub_cache.py``, ``rehearsal/standins.py``), fast; the whole rehearsal
is ``test_rehearsal.py`` (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import hf_hub_download

from pva_dagster.rehearsal.hub_cache import repo_folder, write_snapshot
from pva_dagster.rehearsal.random_models import TINY_GEMMA2, random_gemma2
from pva_dagster.rehearsal.standins import (
    choose_planted,
    gemmascope_location,
    gemmascope_params,
    plant_program,
    plantable,
    standin_tokenizer,
)
from pva_dagster.study.generation.prompts import extract_code


def test_a_snapshot_resolves_offline_like_a_download(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    snapshot = write_snapshot(tmp_path / "hf", "model", "org/name", {"sub/a.txt": tmp_path / "a.txt"})
    folder = repo_folder(tmp_path / "hf", "model", "org/name")
    assert folder.name == "models--org--name" and (folder / "refs" / "main").read_text() == snapshot.name
    path = hf_hub_download("org/name", "a.txt", subfolder="sub", cache_dir=tmp_path / "hf" / "hub")
    assert Path(path).read_text() == "alpha" and (snapshot / "sub" / "a.txt").is_symlink()
    with pytest.raises(ValueError, match="'org/name/x'"):
        repo_folder(tmp_path, "model", "org/name/x")


def test_gemmascope_paths_come_from_saelens_release_table():
    repo, folder = gemmascope_location(12)
    assert repo == "google/gemma-scope-2b-pt-res" and folder.startswith("layer_12/width_16k/average_l0_")
    with pytest.raises(ValueError, match="layer_99"):
        gemmascope_location(99)


def test_gemmascope_params_have_the_released_layout():
    params = gemmascope_params(d_in=8, d_sae=32, seed=0)
    assert {k: v.shape for k, v in params.items()} == {
        "W_enc": (8, 32), "W_dec": (32, 8), "b_enc": (32,), "b_dec": (8,), "threshold": (32,)
    }
    assert all(v.dtype == np.float32 for v in params.values())
    assert np.allclose(np.linalg.norm(params["W_dec"], axis=1), 1)


def test_only_solutions_that_can_follow_each_other_are_planted():
    assert plantable("import re\r\ndef f(x):\r\n\treturn x")
    assert not plantable("R = 3\ndef f(x):\n    return x")  # a top-level assignment ends the solution
    assert not plantable("print(1)")
    records = [{"task_id": i, "code": f"def f{i % 3}(x):\n    return x"} for i in range(40)]
    chosen = choose_planted(records, seed=0)
    names = [r["code"].split("(")[0] for r in chosen]
    assert 0 < len(chosen) <= 3 and len(names) == len(set(names))
    assert chosen == choose_planted(records, seed=0)


def test_the_planted_program_is_the_greedy_continuation_of_any_prompt():
    pieces = ["def one():\n    return 1\n\n", "def two():\n    return 2\n\n"]
    tokenizer = standin_tokenizer(pieces)
    model = random_gemma2(tokenizer, {**TINY_GEMMA2, "tie_word_embeddings": False}, seed=0)
    plant_program(model, tokenizer.convert_tokens_to_ids(pieces), tokenizer.eos_token_id, seed=0)
    for prompt in ("Write a function.\n\nassert one() == 1\n\n# Solution:", "x = [1, 2]"):
        encoded = tokenizer(prompt, return_tensors="pt")
        assert encoded["input_ids"][0, 0].item() == tokenizer.bos_token_id
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=5, do_sample=False)
        new = out[0, encoded["input_ids"].shape[1] :].tolist()
        assert new[-1] == tokenizer.eos_token_id and len(new) == 3
        assert extract_code(tokenizer.decode(new, skip_special_tokens=True)) == "".join(pieces).rstrip() + "\n"
