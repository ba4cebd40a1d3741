"""How the local job runner starts a job script: a fresh interpreter per job (``spawn``), or a
fork of a warm interpreter that has the data libraries imported already (``fork``, default on
Linux and macOS; saves ~1 s per job). Both give the script its own process group,
environment, working directory, argv and log file, as the SageMaker container does.

Every job process dies with the service: on Linux it asks the kernel for SIGKILL when its
parent dies (``PR_SET_PDEATHSIG``), and the warm interpreter also watches its own parent, so
neither a SIGTERM nor a ``kill -9`` of the server leaves a job training as an orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Protocol

ZYGOTE = Path(__file__).with_name("_zygote.py")
PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 2.0


def die_with_parent() -> None:
    """In a child process: ask Linux to SIGKILL us when our parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM a process group, then SIGKILL what is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Launcher(Protocol):
    def run(
        self, job_id: str, script: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> int: ...

    def kill(self, job_id: str) -> None: ...

    def forget(self, job_id: str) -> None: ...

    def close(self) -> None: ...


def _spawn_child_setup() -> None:
    os.setpgid(0, 0)
    die_with_parent()


# What ``run`` returns for a job killed before its process started (as if SIGKILLed).
KILLED_BEFORE_START = -signal.SIGKILL


class SpawnLauncher:
    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._pids: dict[str, int] = {}
        # Jobs killed before their process existed: ``run`` must not start them at all.
        self._killed: set[str] = set()
        self._lock = threading.Lock()

    def run(
        self, job_id: str, script: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> int:
        with self._lock:
            if job_id in self._killed:
                self._killed.discard(job_id)
                return KILLED_BEFORE_START
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [self.python, script, *argv],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_spawn_child_setup,
            )
            with self._lock:
                self._pids[job_id] = proc.pid
                killed_meanwhile = job_id in self._killed  # a kill between the check and here
                self._killed.discard(job_id)
            try:
                if killed_meanwhile:
                    kill_group(proc.pid)
                return proc.wait()
            finally:
                with self._lock:
                    self._pids.pop(job_id, None)

    def kill(self, job_id: str) -> None:
        """Stop the job; a job that has not started yet never starts."""
        with self._lock:
            pid = self._pids.get(job_id)
            if pid is None:
                self._killed.add(job_id)
        if pid is not None:
            kill_group(pid)

    def forget(self, job_id: str) -> None:
        """The job has ended: a kill that came too late needs no remembering."""
        with self._lock:
            self._killed.discard(job_id)

    def close(self) -> None:
        with self._lock:
            pids = list(self._pids.values())
        for pid in pids:
            kill_group(pid, grace=0.5)


class ForkLauncher:
    """Talks to one ``_zygote.py`` process; falls back to spawning if it cannot start."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._spawn = SpawnLauncher(python)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # request id -> (job id, ended event, [exit code], the zygote it went to); job -> pid
        self._waiting: dict[str, tuple[str, threading.Event, list[int], int]] = {}
        self._pids: dict[str, int] = {}
        self._killed: set[str] = set()  # killed before ``run`` sent them: never started

    def _ensure(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self._proc
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLPIPE_"))}
            proc = subprocess.Popen(
                [self.python, "-u", str(ZYGOTE), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd="/",
            )
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            if not ready:
                return None
            self._proc = proc
            threading.Thread(
                target=self._read, args=(proc.stdout, proc.pid), name="zygote-reader", daemon=True
            ).start()
            return proc

    def _read(self, stdout: IO[bytes], zygote: int) -> None:
        for line in stdout:
            message = json.loads(line)
            request = str(message["id"])
            with self._lock:
                waiter = self._waiting.get(request)
                if waiter is not None and "pid" in message:
                    self._pids[waiter[0]] = int(message["pid"])
                    continue
                if waiter is not None and "exit" in message:
                    self._waiting.pop(request, None)
                    self._pids.pop(waiter[0], None)
            if waiter is not None and "exit" in message:
                waiter[2].append(int(message["exit"]))
                waiter[1].set()
        with self._lock:  # this zygote died: its jobs died with it (a new one may be running)
            mine = {r: w for r, w in self._waiting.items() if w[3] == zygote}
            for request, waiter in mine.items():
                self._waiting.pop(request, None)
                self._pids.pop(waiter[0], None)
        for _, event, result, _ in mine.values():
            result.append(-9)
            event.set()

    def run(
        self, job_id: str, script: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> int:
        with self._lock:
            if job_id in self._killed:
                self._killed.discard(job_id)
                return KILLED_BEFORE_START
        proc = self._ensure()
        if proc is None or proc.stdin is None:
            return self._spawn.run(job_id, script, argv, env, cwd, log)
        request = str(next(self._ids))
        done = threading.Event()
        result: list[int] = []
        message = {
            "id": request,
            "script": script,
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "log": str(log),
        }
        try:
            with self._lock:
                if job_id in self._killed:  # killed while the warm interpreter was starting
                    self._killed.discard(job_id)
                    return KILLED_BEFORE_START
                self._waiting[request] = (job_id, done, result, proc.pid)
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # it died just now: start the job in a fresh one
            with self._lock:
                self._waiting.pop(request, None)
            return self.run(job_id, script, argv, env, cwd, log)
        done.wait()
        return result[0]

    def kill(self, job_id: str) -> None:
        """Stop the job; a job that has not started yet never starts."""
        with self._spawn._lock:
            spawned = job_id in self._spawn._pids
        if spawned:  # it runs in a fresh interpreter (the warm one could not start)
            self._spawn.kill(job_id)
            return
        deadline = time.monotonic() + 5
        while True:  # the pid arrives right after the fork
            with self._lock:
                pid = self._pids.get(job_id)
                pending = any(w[0] == job_id for w in self._waiting.values())
                if pid is None and not pending:
                    # Not sent to the warm interpreter yet: ``run`` will refuse to start it
                    # (in either interpreter, should it fall back to a fresh one).
                    self._killed.add(job_id)
                    self._spawn.kill(job_id)
                    return
            if pid is not None:
                kill_group(pid)
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._killed.discard(job_id)
        self._spawn.forget(job_id)

    def close(self) -> None:
        self._spawn.close()
        with self._lock:
            proc, self._proc = self._proc, None
            pids = list(self._pids.values())
        for pid in pids:
            kill_group(pid, grace=0.5)
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def default_launcher(kind: str = "fork", python: str = sys.executable) -> Launcher:
    if kind == "fork" and hasattr(os, "fork"):
        return ForkLauncher(python)
    return SpawnLauncher(python)
