"""A warm launcher for local jobs (standalone: started by ``job_launcher.ForkLauncher``).

Importing numpy, pandas, pyarrow and scikit-learn costs ~1 s per Python process. This process
imports them once, then forks one child per job; the child takes the job's environment,
working directory, argv and log file, and runs the script as ``__main__`` — what a fresh
``python script.py`` would do, minus the imports.

Protocol (JSON lines): stdin ``{"id", "script", "argv", "env", "cwd", "log"}``; stdout
``{"id", "pid"}`` once the job's process exists (it leads its own process group) and
``{"id", "exit"}`` when it ends. EOF on stdin kills running jobs and exits.

This process and its jobs never outlive the service that started it: each job asks the kernel
for SIGKILL when this process dies (``PR_SET_PDEATHSIG``), and a watchdog thread here ends
everything as soon as the service (argv[1], its pid) is gone — even after a ``kill -9``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from typing import Any

PRELOAD = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "sklearn", "sklearn.ensemble",
           "sklearn.linear_model", "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing",
           "sklearn.impute", "sklearn.metrics", "joblib")  # fmt: skip

_out_lock = threading.Lock()
_children: set[int] = set()


def _reply(message: dict[str, Any]) -> None:
    line = (json.dumps(message) + "\n").encode()
    with _out_lock:
        os.write(1, line)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG


def _child(req: dict[str, Any]) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        script = req["script"]
        sys.argv = [script, *req["argv"]]
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(job_id: str, pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    _children.discard(pid)
    _reply({"id": job_id, "exit": os.waitstatus_to_exitcode(status)})


def _kill_children() -> None:
    for pid in list(_children):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _watch(service_pid: int) -> None:
    """End everything once the service that started us is gone (reparented to init)."""
    while True:
        if os.getppid() != service_pid:
            _kill_children()
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    service_pid = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    threading.Thread(target=_watch, args=(service_pid,), daemon=True).start()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    _reply({"id": "", "ready": True})
    for line in sys.stdin.buffer:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        with contextlib.suppress(OSError):  # before the reply: the runner may kill the group
            os.setpgid(pid, pid)
        _children.add(pid)
        _reply({"id": req["id"], "pid": pid})
        threading.Thread(target=_wait, args=(req["id"], pid), daemon=True).start()
    _kill_children()  # the runner went away: its jobs cannot be reported


if __name__ == "__main__":
    main()
