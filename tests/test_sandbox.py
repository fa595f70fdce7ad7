"""The sandbox against hostile and broken code (real subprocesses), and against the real MBPP references."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pva_dagster.study.sandbox import containment, execution, worker
from pva_dagster.study.sandbox.execution import (
    Outcome,
    SandboxFailure,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    fork_containment,
    probe,
    run_many,
    run_solution,
)
from pva_dagster.study.sandbox.isolation import RUNNER, Isolation, IsolationUnavailable, uid_drop_works
from pva_dagster.study.sandbox.worker import LAUNCHER

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


PRINT_LABEL = "import sys\nprint(sys.argv[-1], flush=True)\n"  # the run's label, which its forks keep


def _alive_started_in(label: str) -> list[int]:
    """Live host processes whose command line holds the run's ``label``: the run's runner and every fork of
    it (not the sandbox around them, which outlives a run).

    Inside a pid namespace the pids a solution sees mean nothing outside, but the runner's argv, inherited
    by every fork, ends with a label fresh for each run (``execution._runner_argv``)."""
    alive = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found = label.encode() + b"\0" in cmdline.read_bytes()
        except OSError:  # exited while we looked
            continue
        if found and not _is_dead(int(cmdline.parent.name)):
            alive.append(int(cmdline.parent.name))
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


def test_trusted_runner_and_launcher_import_the_standard_library_only() -> None:
    """Both run by path under ``python -I -S``, where the package is not importable (nor should it be)."""
    for path in (RUNNER, LAUNCHER):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported and imported <= sys.stdlib_module_names, (path.name, imported - sys.stdlib_module_names)


_LEVELS = [level for level in Isolation if list(Isolation).index(level) >= list(Isolation).index(probe().level)]


@pytest.mark.parametrize("level", _LEVELS, ids=[level.value for level in _LEVELS])
def test_every_available_isolation_reads_and_runs_the_runner_file(level: Isolation) -> None:
    """Read-only inside the namespaces, as ``nobody`` with uid-drop: the runner file is what starts each run,
    and it leaves no module of the package in the solution's interpreter."""
    if level is Isolation.UID_DROP and not uid_drop_works():
        pytest.skip("this interpreter does not run as nobody here")
    tests = [f"assert sys.argv[0] == {str(RUNNER)!r}, sys.argv",
             "assert not [name for name in sys.modules if name.startswith('pva_dagster')]"]  # fmt: skip
    result = run_solution("import sys\n", tests, limits=FAST, isolation=level)
    assert result.outcome is Outcome.PASSED, result.message


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
        monkeypatch.setattr(containment, "pids_cgroup_root", lambda: None)
    solution = (
        PRINT_LABEL + "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(60)\n    os._exit(0)\n"
    )
    result = run_solution(solution, ["assert True"], limits=FAST)
    assert result.passed
    assert _alive_started_in(result.stdout.strip()) == []


@pytest.mark.skipif(
    fork_containment() != "cgroup-pids", reason="a setsid escapee needs a pids cgroup to catch"
)
def test_daemonized_child_in_its_own_session_is_killed() -> None:
    solution = "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
    result = run_solution(PRINT_LABEL + solution, ["assert True"], limits=FAST)
    assert result.passed
    assert _alive_started_in(result.stdout.strip()) == []


@pytest.mark.skipif(
    fork_containment() == "process-group", reason="root without a pids cgroup: forks unbounded"
)
def test_fork_bomb_is_contained() -> None:
    bomb = (
        PRINT_LABEL + "import os\n"
        "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = run_solution(bomb, ["assert True"], limits=FAST)
    assert result.outcome is Outcome.TIMEOUT
    assert not result.passed
    assert _alive_started_in(result.stdout.split()[0]) == []


@pytest.mark.parametrize("level", [Isolation.NONE, Isolation.NAMESPACES])
def test_a_sandbox_that_cannot_start_raises_instead_of_judging(
    level: Isolation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if level is Isolation.NAMESPACES and probe().level is not level:
        pytest.skip(f"no namespaces here: {probe().missing}")
    monkeypatch.setattr(containment, "make_cgroup", lambda *_: tmp_path / "no-such-cgroup")
    with pytest.raises(SandboxFailure, match="could not start.*no-such-cgroup"):  # a fresh thread: a new sandbox
        run_many([SandboxJob(ADD_ONE, ("assert add_one(1) == 2",))], max_workers=1, isolation=level)


def test_a_sandbox_that_cannot_show_its_interpreter_says_what_bwrap_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe runs what every run runs: where the interpreter is not visible inside, both the probe and a
    run fail with bwrap's own message (not "did not answer")."""
    if probe().level is not Isolation.NAMESPACES:
        pytest.skip(f"no namespaces here: {probe().missing}")
    if os.path.realpath(sys.executable).startswith("/usr/"):
        pytest.skip("this interpreter lives in /usr, which the sandbox always shows")
    monkeypatch.setattr(worker, "python_paths", lambda: [])
    with pytest.raises(SandboxFailure, match="could not start: bwrap exited with 1, saying: bwrap: execvp"):
        run_many([SandboxJob(ADD_ONE, ("assert add_one(1) == 2",))], max_workers=1)  # a fresh thread: a new sandbox
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert "execvp" in pool.submit(execution._namespaces_fail, str(probe().bwrap)).result()


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


# ---- Hostile solutions against the isolation: each runs as root and as an unprivileged user. ----------
# They use only the API the sandbox had before isolation, so the same file shows them failing on that code.

UNPRIVILEGED_UID = 61234  # a uid with no passwd entry: a user the kernel knows only by number, owning nothing
_AS_USER = """
import json, sys
from pva_dagster.study.sandbox.execution import SandboxLimits, run_solution
job = json.load(sys.stdin)
result = run_solution(job["solution"], job["tests"], limits=SandboxLimits(**job["limits"]))
print(json.dumps({"outcome": result.outcome.value, "error_type": result.error_type, "message": result.message,
                  "stdout": result.stdout, "stderr": result.stderr, "duration_s": result.duration_s}))
"""


def _interpreter_for(uid: int) -> str | None:
    """This Python, or the system's of the same version, if ``uid`` can run it (the venv's may live under a
    0700 home such as /root/.pyenv). Only the standard library is needed to run the sandbox."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        try:
            done = subprocess.run([candidate, "-I", "-c", "import sys, json; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30, check=False, cwd="/",
                                  user=uid, group=uid, extra_groups=[])  # fmt: skip
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


PROJECT = Path(__file__).resolve().parents[1]


def _can_import_the_sandbox(python: str, uid: int) -> bool:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([python, "-c", "import pva_dagster.study.sandbox.execution"], capture_output=True, timeout=60,
                          check=False, cwd="/", env=env, user=uid, group=uid, extra_groups=[])  # fmt: skip
    return done.returncode == 0


class _User:
    """Runs the sandbox as ``who``: this (root) process itself, or a child process as an unprivileged uid."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.uid = os.geteuid() if who == "root" or os.geteuid() != 0 else UNPRIVILEGED_UID
        self.python: str | None = None
        if who == "root" and os.geteuid() != 0:
            pytest.skip("needs root: run the suite as root (as CI and GPU containers do) to cover it")
        if who == "unprivileged" and os.geteuid() == 0:
            self.python = _interpreter_for(UNPRIVILEGED_UID)
            if self.python is None:
                pytest.skip(f"no Python {sys.version_info[:2]} that uid {UNPRIVILEGED_UID} may run here")
            if not _can_import_the_sandbox(self.python, UNPRIVILEGED_UID):
                pytest.skip(f"uid {UNPRIVILEGED_UID} cannot read the project at {PROJECT} (a private folder above it, "
                            "as `mktemp -d` makes): tests/test_sandbox_location.py covers that user from a copy")

    def run(
        self, solution: str, tests: Sequence[str] = ("assert True",), limits: SandboxLimits = FAST
    ) -> SandboxResult:
        if self.python is None:  # root, or the suite itself runs unprivileged
            return run_solution(solution, list(tests), limits=limits)
        job = {"solution": solution, "tests": list(tests), "limits": dataclasses.asdict(limits)}
        env = {**os.environ, "PYTHONPATH": str(PROJECT), "HOME": "/"}
        done = subprocess.run([self.python, "-c", _AS_USER], input=json.dumps(job), capture_output=True,
                              text=True, timeout=60, check=True, cwd="/", env=env,
                              user=self.uid, group=self.uid, extra_groups=[])  # fmt: skip
        fields = json.loads(done.stdout)
        return SandboxResult(**{**fields, "outcome": Outcome(fields["outcome"])})

    def scratch(self) -> Path:
        """A folder outside the sandbox that ``self`` could write to without the sandbox."""
        path = Path(tempfile.mkdtemp(prefix="pva-sandbox-victim-"))
        os.chown(path, self.uid, self.uid)
        return path


@pytest.fixture(params=["root", "unprivileged"])
def user(request: pytest.FixtureRequest) -> _User:
    return _User(request.param)


@pytest.fixture
def victim(user: _User) -> Iterator[Path]:
    """A folder outside the sandbox with a file and a subfolder, owned by ``user``."""
    path = user.scratch()
    (path / "target.txt").write_text("precious")
    (path / "sub").mkdir()
    (path / "sub" / "inner.txt").write_text("also precious")
    for entry in (path / "target.txt", path / "sub", path / "sub" / "inner.txt"):
        os.chown(entry, user.uid, user.uid)
    yield path
    if path.exists():  # gone only where the sandbox failed (test_files_outside_the_folder_stay_unchanged says so)
        shutil.rmtree(path)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``root``: its mode and, for files, its bytes."""
    entries = {".": (root.lstat().st_mode, b"")}
    for path in sorted(root.rglob("*")):
        entries[str(path.relative_to(root))] = (path.lstat().st_mode, path.read_bytes() if path.is_file() else b"")
    return entries


FILE_ATTACKS = {
    "delete-absolute": "import os\nos.remove({target!r})\n",
    "rmtree": "import shutil\nshutil.rmtree({victim!r})\n",
    "overwrite-relative-after-chdir": "import os\nos.chdir({victim!r})\nopen('target.txt', 'w').write('pwned')\n",
    "create-new-file": "open({victim!r} + '/planted.txt', 'w').write('pwned')\n",
    "through-own-symlink": "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('pwned')\n",
    "via-proc-self-cwd": (
        "import os\nopen('/proc/self/cwd/' + os.path.relpath({target!r}, os.getcwd()), 'w').write('pwned')\n"
    ),
    "hard-link-then-write": "import os\nos.link({target!r}, 'hard')\nopen('hard', 'a').write('pwned')\n",
    "rename-into-own-folder": "import os\nos.rename({target!r}, 'stolen')\n",
    "chmod": "import os\nos.chmod({target!r}, 0o777)\n",
    "truncate": "import os\nos.truncate({target!r}, 0)\n",
    "rename-folder-away": "import os\nos.rename({victim!r} + '/sub', {victim!r} + '/moved')\n",
}


@pytest.mark.parametrize("attack", sorted(FILE_ATTACKS))
def test_files_outside_the_folder_stay_unchanged(attack: str, user: _User, victim: Path) -> None:
    before = _snapshot(victim)
    solution = FILE_ATTACKS[attack].format(victim=str(victim), target=str(victim / "target.txt"))
    result = user.run(solution)
    assert _snapshot(victim) == before
    assert result.outcome is Outcome.ERROR, result  # the attempt failed inside the solution, not the sandbox


def test_writing_inside_its_own_folder_still_works(user: _User) -> None:
    solution = "import os, tempfile\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\nfd, path = tempfile.mkstemp()\n"
    result = user.run(solution, ["assert open('a.txt').read() == 'x'", "assert path.startswith(os.getcwd())"])
    assert result.passed, result


class _Server:
    """A TCP (or UNIX) server on 127.0.0.1 only that counts the connections it accepts, until stopped."""

    def __init__(self, family: socket.AddressFamily, address: object) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(2400):  # bounded: two minutes at most, however the test ends
            if self.stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> int:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        return self.accepted


def test_tcp_server_on_the_hosts_loopback_is_not_reached(user: _User) -> None:
    server = _Server(socket.AF_INET, ("127.0.0.1", 0))
    port = server.sock.getsockname()[1]
    try:
        result = user.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n")
    finally:
        accepted = server.close()
    assert accepted == 0
    assert result.outcome is Outcome.ERROR, result


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_unix_socket_servers_are_not_reached(kind: str, user: _User) -> None:
    """A network namespace does not cover UNIX sockets bound to a path (only abstract ones)."""
    folder = user.scratch()
    address = str(folder / "server.sock") if kind == "path" else f"\0pva-sandbox-test-{secrets.token_hex(8)}"
    server = _Server(socket.AF_UNIX, address)
    if kind == "path":
        os.chmod(address, 0o777)  # connectable by anyone: only the sandbox stands in the way
    try:
        result = user.run(
            f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(1)\ns.connect({address!r})\n"
        )
    finally:
        accepted = server.close()
        shutil.rmtree(folder)
    assert accepted == 0
    assert result.outcome is Outcome.ERROR, result


def test_hostname_resolution_errors_within_the_wall_limit(user: _User) -> None:
    result = user.run("import socket\nsocket.getaddrinfo('pypi.org', 443)\n")
    assert result.outcome is Outcome.ERROR, result
    assert result.error_type in ("gaierror", "OSError", "TimeoutError"), result
    assert result.duration_s < FAST.wall_time_s


def test_parent_environment_is_invisible(user: _User, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("PVA_SANDBOX_TEST_SECRET", secret)
    solution = (
        "import glob, os\n"
        "def leaked(secret):\n"
        "    found = [k for k, v in os.environ.items() if secret in v]\n"
        "    for path in glob.glob('/proc/[0-9]*/environ'):\n"
        "        try:\n"
        "            if secret.encode() in open(path, 'rb').read():\n"
        "                found.append(path)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
    )
    # /proc/PID/environ shows a process's environment as it was started: a process started with the secret,
    # as the same user, is what a solution could read it from.
    as_user = {"user": user.uid, "group": user.uid, "extra_groups": []} if os.geteuid() == 0 else {}
    holder = subprocess.Popen(["sleep", "60"], env={**os.environ}, **as_user)  # type: ignore[call-overload]
    try:
        result = user.run(solution, [f"assert leaked({secret!r}) == []",
                                     "assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG'}"])  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert result.passed, result


def test_processes_outside_cannot_be_signalled(user: _User) -> None:
    result = user.run(f"import os\nos.kill({os.getpid()}, 0)\n")
    assert (result.outcome, result.error_type) in ((Outcome.ERROR, "ProcessLookupError"),
                                                   (Outcome.ERROR, "PermissionError")), result  # fmt: skip


def test_no_capabilities_and_kernel_settings_stay_unwritable(user: _User) -> None:
    """Root inside is only root of an empty namespace: no capabilities, /proc/sys read-only, /sys absent.
    The setting written is its own current value, so that the old sandbox, which allowed it, changed nothing."""
    solution = (
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines())\n"
        "caps = [int(status[name], 16) for name in ('CapEff', 'CapPrm', 'CapBnd', 'CapAmb')]\n"
        "def rewrite(path):\n"
        "    try:\n"
        "        value = open(path).read()\n"
        "        with open(path, 'w') as fh:\n"
        "            fh.write(value)\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
        "    return 'written'\n"
    )
    tests = ["assert caps == [0, 0, 0, 0], caps",
             "assert rewrite('/proc/sys/vm/overcommit_ratio') != 'written'",
             "assert rewrite('/sys/kernel/mm/transparent_hugepage/enabled') != 'written'"]  # fmt: skip
    result = user.run(solution, tests)
    assert result.passed, result


# ---- One sandbox serves a thread's solutions in turn: nothing of one may reach the next. -------------------


def test_the_next_solution_starts_in_an_empty_folder_with_no_survivor() -> None:
    planter = (
        "import os, time\nopen('planted.txt', 'w').write('x')\nos.mkdir('locked')\nos.chmod('locked', 0)\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(0.5)\n    open('late.txt', 'w').write('x')\n"
        "    os._exit(0)\n"
    )
    assert run_solution(planter, ["assert True"], limits=FAST).passed
    follower = run_solution("import os, time\ntime.sleep(1.0)\nleft = sorted(os.listdir('.'))\n",
                            ["assert left == [], left"], limits=FAST)  # fmt: skip
    assert follower.passed, follower


@pytest.mark.parametrize(
    "attack",
    ["os.kill(1, signal.SIGKILL)", "os.kill(1, signal.SIGSTOP)", "os.kill(-1, signal.SIGKILL)",
     "open('/proc/1/mem', 'rb').read(1)", "os.kill(os.getppid(), signal.SIGSTOP)"],
)  # fmt: skip
def test_the_sandbox_survives_attacks_on_its_launcher(attack: str) -> None:
    """The launcher is the namespace's init (signals without a handler do not reach it) and not dumpable."""
    run_solution(f"import os, signal\n{attack}\n", ["assert True"], limits=FAST)
    after = run_solution(ADD_ONE, ["assert add_one(1) == 2"], limits=FAST)
    assert after.passed, after
    assert after.duration_s < FAST.wall_time_s


_UID_DROP = """
import json, sys
from pva_dagster.study.sandbox.isolation import uid_drop_works
from pva_dagster.study.sandbox.execution import Isolation, SandboxLimits, run_solution
if not uid_drop_works():
    print(json.dumps(None))
    sys.exit()
solution = "import os\\nprint(os.getuid())\\nos.remove(%r)\\n" % sys.argv[1]
result = run_solution(solution, ["assert True"], limits=SandboxLimits(wall_time_s=5), isolation=Isolation.UID_DROP)
print(json.dumps([result.outcome.value, result.error_type, result.stdout]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="uid-drop is the fallback for root without namespaces")
def test_uid_drop_runs_as_nobody_and_protects_roots_files() -> None:
    """Forced here even where namespaces work. It needs a Python that nobody may run: this one, or the
    system's of the same version (this one may live under a 0700 home such as /root/.pyenv)."""
    folder = Path(tempfile.mkdtemp(prefix="pva-sandbox-victim-"))
    os.chmod(folder, 0o755)  # nobody may look in, not write
    target = folder / "target.txt"
    target.write_text("precious")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    try:
        for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
            if not Path(python).exists():
                continue
            done = subprocess.run([python, "-c", _UID_DROP, str(target)], capture_output=True, text=True,
                                  timeout=60, check=True, env=env, cwd="/")  # fmt: skip
            outcome = json.loads(done.stdout.splitlines()[-1])
            if outcome is not None:
                break
        else:
            pytest.skip(f"no Python {version} here that nobody may run")
        assert target.read_text() == "precious"
        assert outcome == ["error", "PermissionError", "65534\n"]
    finally:
        shutil.rmtree(folder)


def test_asking_for_more_isolation_than_the_machine_allows_is_an_error() -> None:
    better = [level for level in Isolation if list(Isolation).index(level) < list(Isolation).index(probe().level)]
    if not better:
        pytest.skip("this machine allows the best isolation there is")
    with pytest.raises(IsolationUnavailable, match=better[0].value):
        run_solution(ADD_ONE, ["assert add_one(1) == 2"], isolation=better[0])


def test_system_v_ipc_objects_do_not_reach_the_next_solution() -> None:
    make = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "ids = [libc.shmget(0, 1 << 20, 0o1600), libc.semget(0, 1, 0o1600), libc.msgget(0, 0o1600)]\n"
    )  # IPC_PRIVATE, IPC_CREAT | 0600
    listed = (
        "def listed():\n"
        "    return [row for kind in ('shm', 'sem', 'msg') for row in list(open('/proc/sysvipc/' + kind))[1:]]\n"
    )
    made = run_solution(make + listed, ["assert min(ids) >= 0, ids", "assert len(listed()) == 3"], limits=FAST)
    assert made.passed, made
    after = run_solution(listed, ["assert listed() == []"], limits=FAST)
    assert after.passed, after


def test_a_forked_copy_of_the_caller_gets_its_own_sandbox() -> None:
    """The thread's sandbox belongs to the process that made it; a fork (a multiprocess executor) makes its
    own instead of talking over the parent's socket."""
    assert run_solution(ADD_ONE, ["assert add_one(1) == 2"], limits=FAST).passed  # the parent's sandbox exists
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked copy
        try:
            result = run_solution(ADD_ONE, ["assert add_one(1) == 2"], limits=FAST)
            os.write(write_fd, b"passed" if result.passed else repr(result).encode())
        finally:
            made = getattr(worker._local, "worker", None)  # os._exit runs no finalizer: kill this copy's own
            if made is not None and made.owner == os.getpid():
                made.kill()
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read_fd, "rb") as fh:
        assert fh.read() == b"passed"
    assert os.waitstatus_to_exitcode(status) == 0
    assert run_solution(ADD_ONE, ["assert add_one(1) == 2"], limits=FAST).passed  # and the parent's still works
