"""The sandbox's trusted runner: the first code of every sandboxed run, started by path as
``python -I -S -X utf8 runner.py JOB_FD LABEL`` (``execution.py``). It reads the job from ``JOB_FD``, joins the
run's cgroup, sets the rlimits, drops to ``nobody`` where asked, runs the setup code, then forks.

Two processes judge a solution, so that no code of the solution can produce a "passed" verdict:

- the **solution process** (the fork) runs the solution in a copy of the setup's namespace and then only
  answers requests: evaluate this piece of an assert, call this object, give the next item. Everything it
  returns crosses a pipe as *plain data* (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
  frozenset; subclasses become their base type), or as an opaque handle to an object that stays on its side.
- the **judge** (this process) keeps the report pipe and the run's nonce, closes both in the fork, makes
  itself non-dumpable (no ptrace, no ``/proc/PID/mem`` or ``/proc/PID/fd`` for the fork, which shares its
  uid), and evaluates every assert itself: each piece of an assert that names the solution (``f(x)``,
  ``Pair(1, 2)``, ``f(x)[0]``) is sent to the solution process, and the comparisons, ``not``/``and``/``or``,
  builtins and standard-library calls around it (``set(...)``, ``sorted(...)``, ``math.isclose(...)``) run
  here, on the plain values that came back. An always-equal object, a patched ``math.isclose``, frames,
  ``gc``, an early exit or a killed judge therefore cannot pass a wrong solution: the verdict is written only
  by this process, and only after every assert held here.

Which pieces of an assert are the solution's is decided before the run, in the pipeline's process
(``judging.py``): the job carries each assert twice, as written (for messages) and rewritten, its pieces
that name the solution replaced by ``__pva_solution__(source, {names})`` calls, with the imports of the real
standard-library names it uses.

Standard library only, and nothing of ``pva_dagster``: it runs under ``-I -S``, before the site-packages are
on ``sys.path``. ``-I`` also keeps this file's folder off ``sys.path``, so a solution cannot import the
package's modules by their bare names.
"""

import builtins
import errno
import os
import resource
import site
import sys

RESOURCE_ERRNOS = (errno.EFBIG, errno.EAGAIN, errno.ENOSPC, errno.EDQUOT)  # file size, processes, disk


def _load_transport():
    """``transport.py`` beside this file, run as a module of its own without touching ``sys.path`` or the import
    system (``importlib`` would cost every run's start; the file is the runner's own, read-only in the sandbox)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transport.py")
    module = type(sys)("pva_sandbox_transport")
    module.__file__ = path
    with open(path, encoding="utf-8") as handle:
        exec(compile(handle.read(), path, "exec"), module.__dict__)
    return module


_transport = _load_transport()
deep, encode, decode, send, receive = (_transport.deep, _transport.encode, _transport.decode, _transport.send,
                                       _transport.receive)  # fmt: skip
flush_output, json_dumps, json_loads, _read_exactly = (_transport.flush_output, _transport.json_dumps,
                                                       _transport.json_loads, _transport._read_exactly)  # fmt: skip


def describe(exc):
    """(type, message, kind) of an exception raised by the solution's code."""
    kind = "error"
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
        kind = "resource"
    message = str(exc) or repr(exc)
    if isinstance(exc, SystemExit):
        kind, message = "exit", f"exit({exc.code!r}) called before the asserts finished"
    return [type(exc).__name__, message[:2000], kind]


# ---- the solution process (untrusted from its first line of solution code) ------------------------------
def _has_frame(depth):
    try:
        sys._getframe(depth)
    except ValueError:
        return False
    return True


def _room_of_a_script():
    """Raise the recursion limit by the runner's frames above the caller, so that the code run from there (the
    solution; the asserts) has the room it has at the top of a plain script."""
    depth = 2  # the caller's frame and the ones above it
    while _has_frame(depth):
        depth += 1
    sys.setrecursionlimit(sys.getrecursionlimit() + depth - 1)


def serve_solution(namespace, solution, requests, answers):
    # As a script's: ``__main__`` is the solution's module (pickle finds its functions: multiprocessing), and
    # the frames of this runner above it do not count against its recursion limit.
    module = type(sys)("__main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = module
    namespace = module.__dict__
    _room_of_a_script()
    try:
        exec(compile(solution, "<solution>", "exec"), namespace)
    except BaseException as exc:
        send(answers, {"raise": describe(exc)})
        os._exit(0)
    objects = []

    def handle(value):
        objects.append(value)
        return ["r", len(objects) - 1]

    send(answers, {"ready": True})
    while (request := deep(receive, requests)) is not None:
        op = request["op"]
        try:
            if op == "eval":
                bound = {k: deep(decode, v, objects.__getitem__) for k, v in request["bound"].items()}
                scope = {**namespace, **bound} if bound else namespace  # comprehensions see globals only
                value = eval(compile(request["source"], request["stage"], "eval"), scope)
            elif op == "call":
                args = deep(decode, request["args"], objects.__getitem__)
                kwargs = deep(decode, request["kwargs"], objects.__getitem__)
                value = objects[request["ref"]](*args, **kwargs)
            elif op == "iter":
                value = iter(objects[request["ref"]])
            elif op == "bool":  # the solution's object's own truth, as a plain bool
                value = bool(objects[request["ref"]])
            elif op == "apply":  # what a builtin asks of the object: its text, length, items, members
                args = deep(decode, request["args"], objects.__getitem__)
                value = _PROTOCOL[request["name"]](objects[request["ref"]], *args)
            else:  # next
                value = next(objects[request["ref"]])
            answer = {"value": deep(encode, value, handle)}
        except StopIteration:
            answer = {"stop": True} if op == "next" else {"raise": ["StopIteration", "", "error"]}
        except BaseException as exc:
            answer = {"raise": describe(exc)}
        try:
            deep(send, answers, answer)
        except (RecursionError, ValueError) as exc:  # unencodable (too deep, ...): say so instead
            send(answers, {"raise": describe(exc)})
    os._exit(0)


# What the judge may ask of an object of the solution's, by name: what Python's builtins (``str``, ``repr``,
# ``len``, ``x[i]``, ``x in y``) would ask of it, each answer a plain value (or another handle).
_PROTOCOL: dict = {
    "str": str, "repr": repr, "len": len, "getitem": lambda obj, key: obj[key], "contains": lambda obj, x: x in obj,
    "getattr": getattr,
}
_PROTOCOL_ERRORS = {error.__name__: error for error in (TypeError, AttributeError, KeyError, IndexError, ValueError)}


# ---- the judge ------------------------------------------------------------------------------------------
class SolutionRaised(Exception):
    """The solution's code raised (type name, message, kind), or its process is gone."""


class SolutionObject:
    """A value of the solution's that is not plain data. It stays in the solution process: it can be called,
    iterated and asked for its truth there (each answer a plain value), and compares equal only to itself."""

    __slots__ = ("ref", "judge")

    def __init__(self, ref, judge):
        self.ref, self.judge = ref, judge

    def __bool__(self):
        truth = self.judge.ask({"op": "bool", "ref": self.ref})
        if type(truth) is not bool:
            raise ValueError("the solution process answered a truth value that is not a bool")
        return truth

    def __call__(self, *args, **kwargs):
        return self.judge.ask({"op": "call", "ref": self.ref, "args": self.judge.outgoing(args),
                               "kwargs": self.judge.outgoing(kwargs)})  # fmt: skip

    def __iter__(self):
        iterator = self.judge.ask({"op": "iter", "ref": self.ref})
        while (item := self.judge.ask({"op": "next", "ref": iterator.ref}, stop=StopIteration)) is not StopIteration:
            yield item

    def _apply(self, name, *args, answer=None):
        """The object's own answer to ``_PROTOCOL[name]``; ``answer``: the plain type it must be, as Python
        requires of ``__str__``, ``__len__`` and ``__contains__`` (``in`` makes any answer a bool)."""
        try:
            value = self.judge.ask({"op": "apply", "ref": self.ref, "name": name, "args": self.judge.outgoing(args)})
        except SolutionRaised as exc:
            # The builtins around the call react to these as Python's do (``list`` falls back when ``len``
            # raises TypeError, ``hasattr`` answers False on AttributeError): raised here as the builtin type
            error_type, message, kind = exc.args
            if kind == "error" and error_type in _PROTOCOL_ERRORS:
                raise _PROTOCOL_ERRORS[error_type](message) from None
            raise
        if answer is not None and type(value) is not answer:
            raise TypeError(f"the solution's object answered {name} with a {type(value).__name__}")
        return value

    def __getattr__(self, name):
        # A public attribute (a lambda's ``p.a`` in a ``sorted`` key); the interpreter's own probes of
        # underscore names are answered here, not by the solution
        if name.startswith("_"):
            raise AttributeError(name)
        return self._apply("getattr", name)

    def __str__(self):
        return self._apply("str", answer=str)

    def __repr__(self):
        return self._apply("repr", answer=str)

    def __len__(self):
        return self._apply("len", answer=int)

    def __getitem__(self, key):
        return self._apply("getitem", key)

    def __contains__(self, item):
        return self._apply("contains", item, answer=bool)


class Judge:
    def __init__(self, requests, answers):
        self.requests, self.answers, self.objects = requests, answers, []

    def handle(self, ref):
        # The solution's process numbers each object it hands over anew, 0, 1, 2, ...: a number seen before
        # would make two different objects compare equal (``f(1) == f(2)``), so it is refused.
        if ref != len(self.objects):
            raise ValueError("the solution process reused or skipped an object number")
        self.objects.append(SolutionObject(ref, self))
        return self.objects[ref]

    def outgoing(self, value):
        def refuse(other):
            if isinstance(other, SolutionObject) and other.judge is self:
                return ["r", other.ref]
            raise TypeError(f"an assert passes a {type(other).__name__} to the solution, which takes plain data")

        return deep(encode, value, refuse)

    def ask(self, request, stop=None):
        deep(send, self.requests, request)
        answer = deep(receive, self.answers)
        if answer is None:
            raise SolutionRaised(None, "", "gone")
        if "raise" in answer:
            raise SolutionRaised(*answer["raise"])
        if "stop" in answer and stop is not None:
            return stop
        return deep(decode, answer["value"], self.handle)

    def evaluate(self, source, stage, bound):
        bound = {name: self.outgoing(value) for name, value in bound.items()}
        return self.ask({"op": "eval", "source": source, "stage": stage, "bound": bound})


def read_job_part(fd, size=None):
    """The job file is ``<10-digit length of part 1><part 1><part 2>`` (``execution._job_file``); read unbuffered,
    so that part 2 (the asserts, the nonce) is read only after the fork and never is in the solution's memory."""
    if size is None:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return json_loads(b"".join(chunks).decode())
    data = _read_exactly(fd, size)
    return json_loads((data or b"").decode())


def main(job_fd, _label):
    job = read_job_part(job_fd, int(_read_exactly(job_fd, 10) or b"0"))
    judging: dict = {}  # part 2, read after the fork: nonce, tests, judged
    solution_pid = 0

    def report(status, error_type=None, message=""):
        if solution_pid:  # it shares our stdout and stderr: nothing more of it after the verdict
            os.kill(solution_pid, 9)  # SIGKILL; not reaped yet, so the pid is still its
        flush_output()  # what the setup code printed
        if not judging:  # a failure before the fork
            judging.update(read_job_part(job_fd))
        # the pid: a forked copy that reports is told apart
        fields = {"pid": os.getpid(), "status": status}
        if error_type is not None:
            fields["error_type"], fields["message"] = error_type[:200], message[:2000]  # the report stays small
        os.write(job["report_fd"], (judging["nonce"] + " " + json_dumps(fields) + "\n").encode())
        os._exit(0)  # never returns

    try:  # a failure here is the sandbox's, not the solution's
        if job["cgroup"]:
            with open(os.path.join(job["cgroup"], "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        for name, (soft, hard) in job["rlimits"]:
            which = getattr(resource, name)
            ceiling = resource.getrlimit(which)[1]  # without privilege a limit can only go down
            if ceiling != resource.RLIM_INFINITY:
                soft, hard = min(soft, ceiling), min(hard, ceiling)
            resource.setrlimit(which, (soft, hard))
        if job["drop_to"]:  # after the cgroup and the limits, which need root; groups first, uid last
            uid, gid = job["drop_to"]
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        _not_dumpable()
        sys.path.extend(job["site_packages"])  # what `site` would add, minus its .pth scan (-S saves ~10 ms)
        site.setquit()  # exit() and quit(), which generated code does call
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
    except BaseException as exc:
        report("sandbox", type(exc).__name__, f"sandbox set-up: {exc}")
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(job["setup"], "<setup>", "exec"), namespace)
    except BaseException as exc:
        error_type, message, _ = describe(exc)
        report("error", error_type, "setup: " + message)
    solution_pid = os.fork()
    if solution_pid == 0:
        for fd in (job["report_fd"], job_fd, requests_w, answers_r):
            os.close(fd)
        serve_solution(namespace, job["solution"], requests_r, answers_w)
    os.close(requests_r)
    os.close(answers_w)
    judging.update(read_job_part(job_fd))
    judge = Judge(requests_w, answers_r)
    stage = "solution"
    # the name judging.SOLUTION_CALL, which the rewritten asserts call
    namespace["__pva_solution__"] = lambda source, bound: judge.evaluate(source, "<" + stage + ">", bound)
    _room_of_a_script()  # for the asserts, which run here
    try:
        ready = receive(answers_r)
        if ready is not None and "raise" in ready:
            raise SolutionRaised(*ready["raise"])
        if ready != {"ready": True}:
            raise SolutionRaised(None, "", "gone")
        for i, (test, (prelude, body)) in enumerate(zip(judging["tests"], judging["judged"], strict=True)):
            stage = f"test {i}"
            exec(prelude, namespace)
            try:
                exec(compile(body, "<" + stage + ">", "exec"), namespace)
            except AssertionError as exc:
                report("assertion", "AssertionError", stage + ": " + (str(exc) or test.strip()))
    except SolutionRaised as exc:
        error_type, message, kind = exc.args
        if kind == "gone":
            status = _gone(solution_pid, stage)
            solution_pid = 0  # reaped
            report(*status)
        report("resource" if kind == "resource" else "error", error_type, stage + ": " + message)
    except BaseException as exc:
        report("error", type(exc).__name__, stage + ": " + (str(exc) or repr(exc)))
    report("passed")


def signal_name(number):
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return f"signal {number}"


def _gone(pid, stage):
    """Why the solution process ended without answering: (status, error type, message)."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if signal_name(-code) == "SIGXCPU":
        return "timeout", "SIGXCPU", f"{stage}: CPU-time limit exceeded"
    if code < 0:
        name = signal_name(-code)
        return "resource", name, f"{stage}: killed by {name} before the asserts finished"
    return "error", "EarlyExit", f"{stage}: exited with code {code} before the asserts finished"


def _not_dumpable():
    """PR_SET_DUMPABLE 0: the solution process, same uid, may neither ptrace this one nor open its /proc
    files (memory, descriptors). Through ``_ctypes`` directly: importing ``ctypes`` costs ~2 ms a run."""
    import _ctypes

    prctl = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")  # type: ignore[arg-type]  # None: this process
    if _ctypes.call_function(prctl, (4, 0, 0, 0, 0)) != 0 or _ctypes.call_function(prctl, (3, 0, 0, 0, 0)) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) did not take effect")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
