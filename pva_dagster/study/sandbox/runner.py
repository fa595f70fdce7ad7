"""The sandbox's trusted runner: the first code of every sandboxed interpreter, run by path as
``python -I -S -X utf8 runner.py JOB_FILE`` (``sandbox.py``). It joins the run's cgroup, sets the rlimits,
drops to ``nobody`` where asked, then runs the setup code, the solution and each assert, and reports the
outcome on a private file descriptor, prefixed by the run's nonce.

Standard library only, and nothing of ``pva_dagster``: it runs under ``-I -S``, before the site-packages are
on ``sys.path``, in the same interpreter as the untrusted code. ``-I`` also keeps this file's folder off
``sys.path``, so a solution cannot import the package's modules by their bare names.
"""

import builtins
import errno
import json
import os
import resource
import site
import sys


# No `typing` (nor `from __future__`) import: each costs start-up time on every solution run.
def main(job_file: str) -> None:
    with open(job_file, encoding="utf-8") as fh:
        job = json.load(fh)
    os.unlink(job_file)
    fd, nonce = job["report_fd"], job["nonce"]

    def report(status: str, exc: BaseException | None = None, stage: str = "", detail: str = "") -> None:
        # the pid: a forked copy of the runner that reports is told apart
        fields: dict[str, object] = {"pid": os.getpid(), "status": status}
        if exc is not None:
            fields["error_type"] = type(exc).__name__
            fields["message"] = (stage + ": " + (detail or str(exc) or repr(exc)))[:2000]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os.write(fd, (nonce + " " + json.dumps(fields) + "\n").encode())
        os._exit(0)  # atexit hooks and stray threads of the solution do not get to run; never returns

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
        sys.path.extend(job["site_packages"])  # what `site` would add, minus its .pth scan (-S saves ~10 ms)
        site.setquit()  # exit() and quit(), which generated code does call
    except BaseException as exc:
        report("sandbox", exc, "sandbox set-up")
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    parts = [("setup", job["setup"]), ("solution", job["solution"])]
    parts += [(f"test {i}", test) for i, test in enumerate(job["tests"])]
    for stage, source in parts:
        try:
            exec(compile(source, "<" + stage + ">", "exec"), namespace)
        except BaseException as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            raised_by_test = (
                tb is not None and tb.tb_frame.f_code.co_filename == "<" + stage + ">" and stage.startswith("test")
            )
            if isinstance(exc, AssertionError) and raised_by_test:
                report("assertion", exc, stage, str(exc) or source.strip())
            if isinstance(exc, SystemExit):
                report("error", exc, stage, f"exit({exc.code!r}) called before the asserts finished")
            exhausted = isinstance(exc, OSError) and exc.errno in (errno.EFBIG, errno.EAGAIN)
            report("resource" if isinstance(exc, MemoryError) or exhausted else "error", exc, stage)
    report("passed")


if __name__ == "__main__":
    main(sys.argv[1])
