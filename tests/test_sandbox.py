"""The sandbox against hostile and broken code (real subprocesses), and against the real MBPP references."""

from __future__ import annotations

import ast
import json
import os
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from pva_dagster.study import sandbox
from pva_dagster.study.sandbox import (
    Outcome,
    SandboxFailure,
    SandboxJob,
    SandboxLimits,
    fork_containment,
    run_many,
    run_solution,
)

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"
FAST = SandboxLimits(wall_time_s=1.5, cpu_time_s=5, memory_mb=256)
ADD_ONE = "def add_one(x):\n    return x + 1\n"


def _is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (it runs no code either way)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _alive_in_group(pgid: int) -> list[int]:
    alive = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getpgid(int(entry)) == pgid and not _is_dead(int(entry)):
                alive.append(int(entry))
        except ProcessLookupError:
            pass
    return alive


def test_passing_solution() -> None:
    result = run_solution(ADD_ONE + "print('hello')", ["assert add_one(1) == 2", "assert add_one(-1) == 0"])
    assert result.outcome is Outcome.PASSED and result.passed
    assert result.error_type is None
    assert result.stdout == "hello\n"


def test_failing_assert_names_the_test() -> None:
    result = run_solution(ADD_ONE, ["assert add_one(1) == 2", "assert add_one(1) == 3"])
    assert result.outcome is Outcome.FAILED_ASSERTION and not result.passed
    assert result.error_type == "AssertionError"
    assert result.message == "test 1: assert add_one(1) == 3"


def test_exception_reports_type_and_message() -> None:
    result = run_solution("def f(x):\n    return {}[x]\n", ["assert f('missing') == 1"])
    assert result.outcome is Outcome.ERROR
    assert result.error_type == "KeyError"
    assert result.message == "test 0: 'missing'"
    syntax = run_solution("def f(:\n", ["assert True"])
    assert (syntax.outcome, syntax.error_type) == (Outcome.ERROR, "SyntaxError")


def test_assertion_inside_the_solution_is_an_error_not_a_failed_test() -> None:
    result = run_solution("def f(x):\n    assert x > 0\n    return x\n", ["assert f(-1) == -1"])
    assert (result.outcome, result.error_type) == (Outcome.ERROR, "AssertionError")


def test_setup_code_raising_is_an_error() -> None:
    result = run_solution(ADD_ONE, ["assert add_one(1) == 2"], setup_code="raise ValueError('bad setup')")
    assert (result.outcome, result.error_type, result.message) == (
        Outcome.ERROR,
        "ValueError",
        "setup: bad setup",
    )


def test_setup_code_runs_before_the_solution() -> None:
    result = run_solution("def g():\n    return BASE + 1\n", ["assert g() == 42"], setup_code="BASE = 41")
    assert result.passed


def test_infinite_loop_times_out_quickly() -> None:
    start = time.monotonic()
    result = run_solution("while True:\n    pass\n", ["assert True"], limits=FAST)
    assert result.outcome is Outcome.TIMEOUT
    assert 1.4 < result.duration_s < 3.0
    assert time.monotonic() - start < 5.0


def test_memory_bomb_is_resource_killed() -> None:
    result = run_solution("hog = bytearray(2 * 1024**3)\n", ["assert True"], limits=FAST)
    assert (result.outcome, result.error_type) == (Outcome.RESOURCE_KILLED, "MemoryError")


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "exit()"])
def test_early_exit_zero_has_not_passed(exit_call: str) -> None:
    result = run_solution(ADD_ONE + exit_call + "\n", ["assert add_one(1) == 2"])
    assert result.outcome is Outcome.ERROR and not result.passed
    assert result.error_type in ("SystemExit", "EarlyExit")


def test_printing_megabytes_is_capped_and_the_caller_survives() -> None:
    limits = SandboxLimits(output_bytes=1000)
    result = run_solution("import sys\nsys.stdout.write('x' * 20_000_000)\nprint('e' * 5_000_000, file=sys.stderr)\n",
                          ["assert True"], limits=limits)  # fmt: skip
    assert result.passed
    assert result.stdout == "x" * 1000 + "\n[output truncated]"
    assert result.stderr.startswith("e" * 1000) and len(result.stderr) < 1100


def test_printing_forever_hits_the_file_size_limit() -> None:
    result = run_solution("while True:\n    print('y' * 4096)\n", ["assert True"], limits=FAST)
    assert result.outcome in (Outcome.RESOURCE_KILLED, Outcome.TIMEOUT)
    assert len(result.stdout) < FAST.output_bytes + 100


def test_reading_stdin_sees_end_of_file() -> None:
    result = run_solution("import sys\ndata = sys.stdin.read()\n", ["assert data == ''"], limits=FAST)
    assert result.passed
    prompt = run_solution("name = input()\n", ["assert True"], limits=FAST)
    assert (prompt.outcome, prompt.error_type) == (Outcome.ERROR, "EOFError")


@pytest.mark.parametrize("cgroup", [True, False], ids=["with-cgroup", "process-group-only"])
def test_child_left_running_in_the_process_group_is_killed(
    cgroup: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cgroup and fork_containment() != "cgroup-pids":
        pytest.skip("no writable pids cgroup here")
    if not cgroup:  # the path taken where no cgroup can be made: the process-group kill alone must do it
        monkeypatch.setattr(sandbox, "_pids_cgroup_root", lambda: None)
    solution = (
        "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(60)\n    os._exit(0)\nprint(pid)\n"
    )
    result = run_solution(solution, ["assert True"], limits=FAST)
    assert result.passed
    assert _is_dead(int(result.stdout))


@pytest.mark.skipif(
    fork_containment() != "cgroup-pids", reason="a setsid escapee needs a pids cgroup to catch"
)
def test_daemonized_child_in_its_own_session_is_killed() -> None:
    solution = "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
    result = run_solution(solution + "print(pid)\n", ["assert True"], limits=FAST)
    assert result.passed
    assert _is_dead(int(result.stdout))


@pytest.mark.skipif(
    fork_containment() == "process-group", reason="root without a pids cgroup: forks unbounded"
)
def test_fork_bomb_is_contained() -> None:
    bomb = "import os\nprint(os.getpid(), flush=True)\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_solution(bomb, ["assert True"], limits=FAST)
    assert result.outcome is Outcome.TIMEOUT
    assert not result.passed
    leader = int(result.stdout.split()[0])
    assert _is_dead(leader)
    assert _alive_in_group(leader) == []


def test_a_sandbox_that_cannot_start_raises_instead_of_judging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "_make_cgroup", lambda nonce, limits: tmp_path / "no-such-cgroup")
    with pytest.raises(SandboxFailure, match="could not start.*no-such-cgroup"):
        run_solution(ADD_ONE, ["assert add_one(1) == 2"])


def test_limits_are_validated_by_name() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=0)
    with pytest.raises(ValueError, match="wall_time_s"):
        SandboxLimits(wall_time_s=-1.0)


def test_run_many_keeps_input_order() -> None:
    jobs = [SandboxJob(ADD_ONE, (f"assert add_one({i}) == {i + 1 if i % 2 else 0}",)) for i in range(6)]
    results = run_many(jobs, max_workers=3)
    assert [r.passed for r in results] == [i % 2 == 1 for i in range(6)]


def _mbpp() -> list[dict]:
    if not MBPP.exists():
        pytest.skip(f"real MBPP not found at {MBPP}")
    return [json.loads(line) for line in MBPP.read_text(encoding="utf-8").splitlines() if line.strip()]


def _broken(code: str) -> str:
    """The reference with every top-level function redefined to return None (classes left as they are)."""
    with warnings.catch_warnings():  # some references have invalid escapes such as "\d" in plain strings
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    return code + "\n" + "".join(f"\ndef {name}(*args, **kwargs):\n    return None\n" for name in names)


def test_real_mbpp_references_pass_and_broken_variants_fail() -> None:
    rows = _mbpp()
    assert len(rows) == 974
    references = [SandboxJob(r["code"], tuple(r["test_list"]), r["test_setup_code"]) for r in rows]
    broken = [SandboxJob(_broken(r["code"]), tuple(r["test_list"]), r["test_setup_code"]) for r in rows]
    results = run_many(references + broken)
    reference_results, broken_results = results[: len(rows)], results[len(rows) :]

    failing = {
        row["task_id"]: res for row, res in zip(rows, reference_results, strict=True) if not res.passed
    }
    assert sorted(failing) == [367, 927]
    assert {(res.outcome, res.error_type) for res in failing.values()} == {(Outcome.ERROR, "NameError")}

    still_passing = [row["task_id"] for row, res in zip(rows, broken_results, strict=True) if res.passed]
    assert still_passing == []
    outcomes = Counter(res.outcome for res in broken_results)
    assert outcomes[Outcome.FAILED_ASSERTION] > 900  # nearly all break on the assert; a few on None
