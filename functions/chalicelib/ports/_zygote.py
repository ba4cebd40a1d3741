"""A warm launcher for local jobs (standalone: started by ``job_launcher.ForkLauncher``).

Importing numpy, pandas, pyarrow and scikit-learn costs ~1 s per Python process. This process
imports them once, then forks one child per job; the child takes the job's environment,
working directory, argv and log file, and runs the script as ``__main__`` — what a fresh
``python script.py`` would do, minus the imports.

Protocol (JSON lines): stdin ``{"id", "script", "argv", "env", "cwd", "log"}``; stdout
``{"id", "exit"}`` when the job's process ends. EOF on stdin kills running jobs and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import sys
import threading
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


def _child(req: dict[str, Any]) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
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


def main() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    _reply({"id": "", "ready": True})
    for line in sys.stdin.buffer:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _children.add(pid)
        threading.Thread(target=_wait, args=(req["id"], pid), daemon=True).start()
    for pid in list(_children):  # the runner went away: its jobs cannot be reported
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
