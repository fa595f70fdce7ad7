"""What a hostile solution must not get from the sandbox (real subprocesses through the real sandbox): a
"passed" verdict it did not earn, a secret outside its folder, unbounded disk, or a channel to the next
solution. Each attack is paired with an honest solution through the same asserts, which must pass, so a
test fails where the judging is merely broken."""

from __future__ import annotations

import os
import secrets
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pva_dagster.study.layout import default_data_root
from pva_dagster.study.sandbox import containment, worker
from pva_dagster.study.sandbox.execution import Outcome, SandboxLimits, probe, run_solution
from pva_dagster.study.sandbox.isolation import Isolation

FAST = SandboxLimits(wall_time_s=3.0, cpu_time_s=5, memory_mb=512)
TESTS = ["assert add_one(1) == 2", "assert add_one(2) == 3"]
WRONG = "def add_one(x):\n    return x - 1\n"  # fails both asserts unless the verdict is forged

# Routes from a wrong solution to a "passed" report, each in the solution's own code.
FORGERIES = {
    # The runner's report function and nonce, reached through the interpreter's frames or the heap.
    "frames": (
        "import sys\nf = sys._getframe(0)\nwhile f is not None:\n"
        "    if 'report' in f.f_locals:\n        f.f_locals['report']('passed')\n    f = f.f_back\n"
    ),
    "gc-objects": (
        "import gc\nfor o in gc.get_objects():\n"
        "    if callable(o) and getattr(o, '__name__', '') == 'report':\n        o('passed')\n"
    ),
    "write-report-descriptors": (
        "import gc, os, json\n"
        "nonce = next(o['nonce'] for o in gc.get_objects() if isinstance(o, dict) and 'nonce' in o)\n"
        "for fd in range(3, 64):\n    try:\n"
        "        os.write(fd, (nonce + ' ' + json.dumps({'pid': os.getppid(), 'status': 'passed'}) + '\\n').encode())\n"
        "        os.write(fd, (nonce + ' ' + json.dumps({'pid': os.getpid(), 'status': 'passed'}) + '\\n').encode())\n"
        "    except OSError:\n        pass\n"
    ),
    "parent-descriptors-through-proc": (
        "import os, glob\nfor path in glob.glob(f'/proc/{os.getppid()}/fd/*'):\n    try:\n"
        "        open(path, 'w').write('forged passed\\n')\n    except OSError:\n        pass\n"
    ),
    "ptrace-the-judge": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "attached = libc.ptrace(16, os.getppid(), 0, 0)\n"  # PTRACE_ATTACH
        "mem = None\ntry:\n    mem = open(f'/proc/{os.getppid()}/mem', 'r+b')\nexcept OSError:\n    pass\n"
    ),
    # Objects that answer every comparison with True.
    "always-equal-object": WRONG.replace("return x - 1", "return AlwaysEqual()")
    + "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n",
    "int-subclass-equal-to-all": WRONG.replace("return x - 1", "return Int(0)")
    + "class Int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n",
    # The asserts' own helpers, patched or shadowed next to the function under test.
    "patched-builtins-and-modules": WRONG + "import builtins, operator\nbuiltins.AssertionError = KeyboardInterrupt\n"
    "operator.eq = lambda a, b: True\n",
    "early-exit-and-killed-judge": WRONG + "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "stopped-judge": WRONG + "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n",
}


@pytest.mark.parametrize("attack", sorted(FORGERIES))
def test_a_wrong_solution_cannot_forge_its_verdict(attack: str) -> None:
    assert run_solution("def add_one(x):\n    return x + 1\n", TESTS, limits=FAST).passed  # the asserts work
    result = run_solution(WRONG + FORGERIES[attack], TESTS, limits=FAST)
    assert not result.passed, result


@pytest.mark.parametrize(
    ("tests", "honest", "cheat"),
    [
        (["assert math.isclose(half(3), 1.5)"], "def half(x):\n    return x / 2\n",
         "import math\nmath.isclose = lambda *a, **k: True\ndef half(x):\n    return 0.0\n"),
        (["assert set(pair(1)) == set([1, 2])"], "def pair(x):\n    return [x, x + 1]\n",
         "def set(*args):\n    return 0\ndef pair(x):\n    return []\n"),
        (["assert abs(half(3) - 1.5) < 1e-9"], "def half(x):\n    return x / 2\n",
         "abs = lambda x: 0\ndef half(x):\n    return 99.0\n"),
        (["assert sorted(pair(3)) == [3, 4]"], "def pair(x):\n    return (x + 1, x)\n",
         "import builtins\nbuiltins.sorted = lambda x: [3, 4]\ndef pair(x):\n    return (0,)\n"),
        (["assert math.isclose(half(3), 1.5)"], "import math\ndef half(x):\n    return x / 2\n",
         "from unittest.mock import call as math\ndef half(x):\n    return 0.0\n"),
        (["assert set(pair(1)) == set([1, 2])"], "def pair(x):\n    return [x, x + 1]\n",
         "from builtins import type as set\ndef pair(x):\n    return []\n"),
        (["assert abs(half(3) - 1.5) < 1e-9"], "def half(x):\n    return x / 2\n",
         "from operator import neg as abs\ndef half(x):\n    return 99.0\n"),
        (["assert list(evens(4)) == [0, 2]"], "def evens(n):\n    return (i for i in range(n) if i % 2 == 0)\n",
         "def evens(n):\n    return Fake()\nclass Fake:\n    def __eq__(self, other):\n        return True\n"
         "    def __iter__(self):\n        return iter([9])\n"),
    ],
    ids=["patched-math-isclose", "shadowed-set", "shadowed-abs", "patched-sorted", "math-imported-as-mock-call",
         "set-imported-as-type", "abs-imported-as-neg", "fake-iterable"],
)  # fmt: skip
def test_the_asserts_helpers_are_the_real_ones(tests: list[str], honest: str, cheat: str) -> None:
    """Comparisons, builtins and standard-library calls around the function under test run in the judge,
    on plain values; the solution's patches and shadows stay in its own process."""
    assert run_solution(honest, tests, limits=FAST).passed
    result = run_solution(cheat, tests, limits=FAST)
    assert not result.passed, result


def test_a_function_under_test_named_like_a_builtin_is_the_solutions() -> None:
    """MBPP task 126 tests a function called ``sum``: with nothing else of the solution in the assert, the
    solution's definition is what the assert calls."""
    solution = "def sum(a, b):\n    return len({d for d in range(1, min(a, b) + 1) if a % d == b % d == 0})\n"
    assert run_solution(solution, ["assert sum(10, 15) == 2", "assert sum(4, 6) == 2"], limits=FAST).passed


def test_plain_values_keep_their_types_and_values_across_the_pipe() -> None:
    values = (
        "[None, True, 2**200, -0.0, float('inf'), 1.5, 2+3j, 'é\\ud800', b'\\x00', bytearray(b'z'), "
        "(1, (2,)), {1: [2]}, {3}, frozenset({4}), __import__('collections').Counter('aa')]"
    )
    tests = ["assert values()[2] == 2**200 and values()[1] is True and values()[0] is None",
             "assert str(values()[3]) == '-0.0' and values()[4] == float('inf')",
             "assert values()[6] == 2+3j and values()[7] == '\u00e9\\ud800' and values()[8] == b'\\x00'",
             "assert type(values()[9]) is bytearray and values()[10] == (1, (2,)) and values()[11] == {1: [2]}",
             "assert values()[12] == {3} and type(values()[13]) is frozenset and values()[14] == {'a': 2}"]  # fmt: skip
    result = run_solution(f"def values():\n    return {values}\n", tests, limits=FAST)
    assert result.passed, result


def test_objects_of_the_solution_can_be_passed_back_and_iterated() -> None:
    solution = (
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "def longest(pairs, n):\n    return max(p.b - p.a for p in pairs[:n])\n"
        "def squares(n):\n    for i in range(n):\n        yield i * i\n"
    )
    tests = ["assert longest([Pair(5, 24), Pair(15, 25)], 2) == 19", "assert list(squares(3)) == [0, 1, 4]",
             "assert all(longest([Pair(0, k)], 1) == k for k in range(3))",
             "assert list(map(lambda p: longest([p], 1), [Pair(1, 2)])) == [1]"]  # fmt: skip
    result = run_solution(solution, tests, limits=FAST)
    assert result.passed, result


# ---- What a solution can read -------------------------------------------------------------------------


@pytest.fixture
def secret_files() -> Iterator[dict[str, str]]:
    """A secret in a home folder, in the Hugging Face cache there, and in the project's data folder."""
    token = secrets.token_hex(16)
    places = {
        "home": Path.home() / f".pva-sandbox-secret-{token}",
        "hf-cache": Path.home() / ".cache" / "huggingface" / f"pva-sandbox-secret-{token}",
        "data": default_data_root() / f"pva-sandbox-secret-{token}",
    }
    made = []
    for path in places.values():
        for parent in reversed(path.parents):
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
        path.write_text(token)
        made.append(path)
    try:
        yield {name: str(path) for name, path in places.items()} | {"token": token}
    finally:
        for path in reversed(made):
            path.rmdir() if path.is_dir() else path.unlink()


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_secrets_outside_the_folder_are_not_readable(secret_files: dict[str, str]) -> None:
    """The home folder, caches, the project and its data are absent inside; so are /etc/shadow and /sys."""
    paths = [secret_files["home"], secret_files["hf-cache"], secret_files["data"], "/etc/shadow",
             str(Path.home() / ".cache"), str(default_data_root()), "/sys/kernel"]  # fmt: skip
    solution = (
        "import os\ndef readable(paths):\n    found = []\n    for path in paths:\n"
        "        try:\n            found.append(os.listdir(path) if os.path.isdir(path) else open(path).read())\n"
        "        except OSError:\n            pass\n    return found\n"
    )
    result = run_solution(solution, [f"assert readable({paths!r}) == []"], limits=FAST)
    assert result.passed, result
    # and the same solution reads what it may: the standard library
    import json

    assert run_solution(solution, [f"assert readable([{json.__file__!r}]) != []"], limits=FAST).passed


# ---- Disk and what one solution leaves for the next ----------------------------------------------------


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_writing_past_the_disk_cap_is_not_passed() -> None:
    limits = SandboxLimits(wall_time_s=5.0, disk_mb=4)
    many_files = "for i in range(8):\n    open(f'f{i}', 'wb').write(b'x' * 1024 * 1024)\n"
    result = run_solution(many_files, ["assert True"], limits=limits)
    assert (result.outcome, result.error_type) == (Outcome.RESOURCE_KILLED, "OSError"), result
    assert "No space left" in result.message
    assert run_solution(many_files.replace("range(8)", "range(2)"), ["assert True"], limits=limits).passed


# The key-management system calls have no libc wrapper: their numbers per architecture.
KEY_SYSCALLS = {"x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250},
                "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219}}  # fmt: skip


def _key_syscalls() -> dict[str, int]:
    numbers = KEY_SYSCALLS.get(os.uname().machine)
    if numbers is None:
        pytest.skip(f"key system call numbers not known for {os.uname().machine}")
    return numbers


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_keys_and_message_queues_do_not_reach_the_next_solution() -> None:
    """Kernel keyrings and POSIX message queues outlive their processes, like System V IPC."""
    add_key, request_key = (_key_syscalls()[name] for name in ("add_key", "request_key"))
    plant = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"key = libc.syscall({add_key}, b'user', b'pva-planted', b'x', 1, -4)\n"
        "queue = libc.mq_open(b'/pva-planted', os.O_CREAT | os.O_RDWR, 0o600, None)\n"
    )
    assert run_solution(plant, ["assert key > 0"], limits=FAST).passed  # the key was made
    look = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"key = libc.syscall({request_key}, b'user', b'pva-planted', None, 0)\n"
        "queue = libc.mq_open(b'/pva-planted', os.O_RDONLY, 0, None)\n"
    )
    after = run_solution(look, ["assert key == -1", "assert queue == -1"], limits=FAST)
    assert after.passed, after


def test_pieces_keep_their_own_comprehensions_lambdas_and_walrus() -> None:
    solution = "def f(x):\n    return x\n"
    tests = ["assert f([x for x in range(3)]) == [0, 1, 2]", "assert f(lambda x: x * 2)(3) == 6",
             "assert f((y := 3)) == 3", "assert all(f(k) == k for k in range(3))",
             "assert f({k: v for k, v in [(1, 2)]}) == {1: 2}"]  # fmt: skip
    result = run_solution(solution, tests, limits=FAST)
    assert result.passed, result


def test_numbers_that_are_not_builtin_types_compare_as_they_would() -> None:
    """Decimal, Fraction, range and builtin types come back rebuilt exactly, not as opaque objects."""
    solution = (
        "from decimal import Decimal\nfrom fractions import Fraction\n"
        "def third(x):\n    return Fraction(x, 3)\ndef exact(x):\n    return Decimal(x) / 2\n"
        "def upto(n):\n    return range(n)\ndef kind(x):\n    return type(x)\n"
    )
    tests = ["assert third(1) == Fraction(1, 3) and third(3) == 1", "assert exact(3) == 1.5",
             "assert upto(3) == range(3)", "assert kind(1) is int"]  # fmt: skip
    result = run_solution(solution, tests, setup_code="from fractions import Fraction\n", limits=FAST)
    assert result.passed, result


@pytest.mark.skipif(
    not any((Path(folder) / "numpy").is_dir() for folder in site.getsitepackages()),
    reason="NumPy is not in the site-packages the sandbox shows",
)
def test_numpy_scalars_compare_as_their_python_values() -> None:
    solution = "import numpy as np\ndef total(xs):\n    return np.sum(xs)\n"
    solution += "def ratio(x):\n    return np.float32(x) / 2\n"
    result = run_solution(solution, ["assert total([1, 2, 3]) == 6", "assert ratio(3) == 1.5"], limits=FAST)
    assert result.passed, result


HIDDEN = "hidden-token-12347"


def test_the_asserts_are_never_in_the_solutions_memory() -> None:
    """Extended tests must stay hidden from the code they judge: the solution's process is forked before the
    runner reads the asserts, so a scan of all its readable memory does not find them."""
    scan = (  # its heap and anonymous memory, where Python keeps its objects (read directly: it is not dumpable)
        "import ctypes, re\npattern = re.compile(rb'hidden-token-[0-9]{4}7')\n"  # matches HIDDEN, not its text
        "def seen():\n    for line in open('/proc/self/maps'):\n        fields = line.split()\n"
        "        span, perms, name = fields[0], fields[1], (fields[5] if len(fields) > 5 else '')\n"
        "        if 'r' not in perms or name not in ('', '[heap]', '[stack]'):\n            continue\n"
        "        low, high = (int(x, 16) for x in span.split('-'))\n"
        "        if pattern.search(ctypes.string_at(low, high - low)):\n            return True\n"
        "    return False\nfound = seen()\n"
    )
    result = run_solution(scan, ["assert found is False", f"assert True, {HIDDEN!r}"], limits=FAST)
    assert result.passed, result


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_a_deep_tree_and_marks_on_the_folder_do_not_reach_the_next_solution() -> None:
    """A tree deeper than any recursion or path limit is removed; the folder's extended attributes, mode and
    times are reset; the persistent keyring is emptied. The pipeline never sees the sandbox fail."""
    add_key, keyctl = (_key_syscalls()[name] for name in ("add_key", "keyctl"))
    plant = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"persistent = libc.syscall({keyctl}, 22, -1, -3)\n"
        f"key = libc.syscall({add_key}, b'user', b'pva-persistent', b'x', 1, persistent)\n"
        "os.setxattr('.', 'user.pva', b'planted')\nos.utime('.', (12345, 12345))\n"
        "for i in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\nopen('leaf', 'w').write('x')\n"
    )
    assert run_solution(plant, ["assert key > 0"], limits=FAST).passed
    look = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"persistent = libc.syscall({keyctl}, 22, -1, -3)\n"
        f"key = libc.syscall({keyctl}, 10, persistent, b'user', b'pva-persistent', 0)\n"  # KEYCTL_SEARCH
        "left, marks, when = os.listdir('.'), os.listxattr('.'), os.stat('.').st_mtime\n"
    )
    after = run_solution(look, ["assert key == -1", "assert left == [] and marks == []", "assert when != 12345"],
                         limits=FAST)  # fmt: skip
    assert after.passed, after


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_a_solution_that_breaks_the_sandbox_is_judged_an_error_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files made until the wall-time limit make the launcher's cleanup outlast the (here shortened) wait for its
    answer: the sandbox is killed, the solution run once more in a fresh one, then judged an error; the caller
    gets a result."""
    monkeypatch.setattr(worker, "_ANSWER_TIMEOUT_S", 0.02)
    many = "i = 0\nwhile True:\n    open(str(i), 'w').close()\n    i += 1\n"
    result = run_solution(many, ["assert True"], limits=SandboxLimits(wall_time_s=1.0))
    assert (result.outcome, result.error_type) == (Outcome.ERROR, "SandboxBroken"), result
    assert "broke twice" in result.message
    monkeypatch.undo()
    assert run_solution("def add_one(x):\n    return x + 1\n", TESTS, limits=FAST).passed  # and it goes on


def test_ordinary_python_behaves_as_it_does_outside() -> None:
    """Ordinary Python the judge must not get wrong: multiprocessing (needs /dev/shm and a pickleable
    ``__main__``), recursion as deep as a plain script allows, a truthy object as an assert's value, deques
    and dict views compared as Python compares them."""
    limits = SandboxLimits(wall_time_s=10.0)
    pool = "from multiprocessing import Pool\ndef sq(x):\n    return x * x\ndef f(xs):\n    with Pool(2) as p:\n"
    assert run_solution(pool + "        return p.map(sq, xs)\n", ["assert f([1, 2]) == [1, 4]"], limits=limits).passed
    recursive = "def r(n):\n    return 0 if n == 0 else 1 + r(n - 1)\n"
    plain = {n: subprocess.run([sys.executable, "-c", recursive + f"assert r({n}) == {n}"], capture_output=True,
                               timeout=60).returncode == 0 for n in (997, 998, 999)}  # fmt: skip
    judged = {n: run_solution(recursive, [f"assert r({n}) == {n}"], limits=limits).passed for n in plain}
    assert judged == plain and plain[997] and not plain[999], (judged, plain)
    objects = "import re\nfrom collections import deque\ndef m(s):\n    return re.match('a', s)\n"
    objects += "def q(x):\n    return deque(x)\ndef keys(d):\n    return d.keys()\n"
    tests = ["assert m('abc')", "assert not m('xyz')", "assert q([1, 2]) == deque([1, 2])",
             "assert keys({1: 2, 3: 4}) == {1, 3}"]  # fmt: skip
    result = run_solution(objects, tests, setup_code="from collections import deque\n", limits=limits)
    assert result.passed, result


def test_odd_deaths_and_names_are_judged_not_raised() -> None:
    """A real-time signal has no name; an exception class named with 200,000 letters would overflow the report
    pipe: both are verdicts, not errors of the caller."""
    killed = run_solution("import os\nos.kill(os.getppid(), 40)\n", ["assert True"], limits=FAST)
    assert (killed.outcome, killed.error_type) == (Outcome.RESOURCE_KILLED, "signal 40"), killed
    named = run_solution("raise type('E' * 200000, (Exception,), {})('boom')\n", ["assert True"], limits=FAST)
    assert named.outcome is Outcome.ERROR and named.error_type == "E" * 200 and named.duration_s < 2, named


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
def test_a_keyring_locked_by_the_solution_is_still_emptied() -> None:
    numbers = _key_syscalls()
    lock = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"key = libc.syscall({numbers['add_key']}, b'user', b'pva-locked', b'secret', 6, -4)\n"
        f"locked = libc.syscall({numbers['keyctl']}, 5, -4, 0x3b3b3b3b) == 0\n"  # KEYCTL_SETPERM: no write
    )
    assert run_solution(lock, ["assert key > 0 and locked"], limits=FAST).passed
    request_key = numbers["request_key"]
    look = f"import ctypes\nkey = ctypes.CDLL(None).syscall({request_key}, b'user', b'pva-locked', None, 0)\n"
    after = run_solution(look, ["assert key == -1"], limits=FAST)
    assert after.passed, after


@pytest.mark.skipif(probe().level is not Isolation.NAMESPACES, reason=f"no namespaces here: {probe().missing}")
@pytest.mark.skipif(
    containment.cgroup_root("memory") in (None, containment.pids_cgroup_root()),
    reason="no cgroup v1 memory hierarchy this process may write to",
)
def test_the_whole_sandbox_has_a_memory_cap_not_only_each_process() -> None:
    """RLIMIT_AS binds each process: forks holding 700 MB each would add up without the sandbox's memory
    cgroup (2 x memory_mb + 256 MB); past it the kernel kills inside the sandbox."""
    hold = (
        "import os, time\ndef hold(n):\n    pids = []\n    for _ in range(n):\n        pid = os.fork()\n"
        "        if pid == 0:\n            block = bytearray(700 * 1024 * 1024)\n"
        "            for i in range(0, len(block), 4096):\n                block[i] = 1\n"
        "            time.sleep(2)\n            os._exit(0)\n        pids.append(pid)\n"
        "    return [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]\n"
    )
    limits = SandboxLimits(wall_time_s=20.0, memory_mb=1024)
    assert run_solution(hold, ["assert hold(2) == [0, 0]"], limits=limits).passed  # 1.4 GB: under the cap
    over = run_solution(hold, ["assert hold(4) == [0, 0, 0, 0]"], limits=limits)  # 2.8 GB: over it
    assert not over.passed, over
