"""Model server processes for the local stack: one per (endpoint, variant).

    servers = ModelServers(data_dir / "servers", on_event=print)
    status = servers.start(ServerSpec("flowers", "AllTraffic", archive, sha256=sha))
    status.url            # http://127.0.0.1:PORT, stable for the life of (endpoint, variant)
    servers.status("flowers", "AllTraffic")   # status, pid, restarts, runtime, last error
    servers.stop("flowers")                    # every variant of the endpoint
    servers.close()                            # everything; also on interpreter exit

Each (endpoint, variant) gets a listening socket on a free loopback port, bound here and kept
here: the server process serves on it (``modelserver.py serve --fd``), so its URL survives
restarts and requests sent while it restarts wait in the socket's backlog instead of being
refused. ``start`` returns once the server says it is serving (``--ready-fd``) and answers
``/ping``; it raises ModelServerError with the end of the server's log if the server exits
first (a model that cannot be loaded is not retried).

A server that dies after it was ready is restarted after a backoff (0.5 s doubling to 30 s;
reset once a server has stayed up for a minute) and the crash is reported: in its status
(``restarting``, ``restarts``, ``last_exit_code``, ``last_error``) and to ``on_event``. After
five consecutive failed restarts it is left ``failed``.

Children die with this process, even on ``kill -9``: each server gets ``--parent-pid`` and
then asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``) and also
watches its parent pid from a thread. Because PDEATHSIG fires when the *thread* that forked
the child ends, every server is spawned from this supervisor's own long-lived thread.

Independent of the rest of iac/local: the standard library and the server script only.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

SERVER_SCRIPT: Final = Path(__file__).resolve().parents[2] / "sagemaker_jobs" / "modelserver.py"
HOST: Final = "127.0.0.1"
LOG_TAIL_BYTES: Final = 2000
# Variables that would make a server listen elsewhere or on other routes than we expect.
_PLATFORM_VARIABLES: Final = ("SAGEMAKER_BIND_TO_PORT", "AIP_")

State = Literal["starting", "ready", "restarting", "failed", "stopped"]


class ModelServerError(Exception):
    """A model server could not be started; the message ends with its log."""


@dataclass(frozen=True)
class ServerSpec:
    """What to serve for one (endpoint, variant)."""

    endpoint: str
    variant: str
    model: Path  # model.tar.gz or an unpacked model directory
    sha256: str | None = None  # of model.tar.gz: checked before anything is unpickled
    fastpath: Path | None = None  # directory with model.onnx + report.json
    fastpath_sha256: str | None = None
    runtime: str = "auto"  # auto | onnx | sklearn
    args: tuple[str, ...] = ()  # more `modelserver.py serve` options (metrics, capture, ...)
    env: tuple[tuple[str, str], ...] = ()  # more environment variables for the process


@dataclass(frozen=True)
class ServerStatus:
    endpoint: str
    variant: str
    url: str
    status: State
    pid: int | None
    runtime: str | None
    restarts: int
    last_exit_code: int | None
    last_error: str | None
    started_at: float | None
    log: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ServerEvent:
    kind: Literal["ready", "crashed", "restarted", "gave_up", "stopped"]
    status: ServerStatus


@dataclass
class _Server:
    spec: ServerSpec
    sock: socket.socket
    log: Path
    workdir: Path
    status: State = "starting"
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready_buffer: bytes = b""
    ready_event: threading.Event = field(default_factory=threading.Event)
    runtime: str | None = None
    restarts: int = 0
    consecutive_failures: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    started_at: float | None = None
    ready_at: float | None = None
    restart_at: float | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


class ModelServers:
    """Starts, watches, restarts and stops model server processes (see the module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        python: str = sys.executable,
        script: Path = SERVER_SCRIPT,
        startup_timeout: float = 120.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        healthy_after: float = 60.0,
        max_consecutive_failures: int = 5,
        stop_timeout: float = 15.0,
        on_event: Callable[[ServerEvent], None] | None = None,
    ) -> None:
        """``on_event`` runs on the supervisor's thread: it must record, not call start()."""
        self.root = Path(root)
        self.python = python
        self.script = Path(script)
        self.startup_timeout = startup_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.max_consecutive_failures = max_consecutive_failures
        self.stop_timeout = stop_timeout
        self.on_event = on_event
        self._servers: dict[tuple[str, str], _Server] = {}
        self._lock = threading.RLock()
        self._requests: queue.Queue[tuple[_Server, Future[None]]] = queue.Queue()
        self._wake_read, self._wake_write = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="model-servers", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # --- public API --------------------------------------------------------------------------

    def start(self, spec: ServerSpec) -> ServerStatus:
        """Serve ``spec`` (replacing what serves its endpoint and variant) and wait until it
        answers /ping. Raises ModelServerError if it exits or times out first."""
        if self._closed:
            raise ModelServerError("the model server supervisor is closed")
        key = (spec.endpoint, spec.variant)
        with self._lock:
            previous = self._servers.get(key)
        sock = previous.sock if previous is not None else _listen()
        if previous is not None:
            self._terminate(previous, keep_socket=True)
        safe = f"{_safe(spec.endpoint)}.{_safe(spec.variant)}"
        server = _Server(
            spec=spec,
            sock=sock,
            log=self.root / "logs" / f"{safe}.log",
            workdir=self.root / "work" / safe,
        )
        with self._lock:
            self._servers[key] = server
        self._spawn_and_wait(server)
        if not server.ready_event.wait(self.startup_timeout) or server.status != "ready":
            reason = server.last_error or "it did not become ready in time"
            self.stop(spec.endpoint, spec.variant)
            with self._lock:
                server.status = "failed"
            raise ModelServerError(
                f"the model server for {spec.endpoint}/{spec.variant} did not start: {reason}"
            )
        _ping(server.port)
        return self._snapshot(server)

    def status(self, endpoint: str, variant: str) -> ServerStatus | None:
        with self._lock:
            server = self._servers.get((endpoint, variant))
            return self._snapshot(server) if server is not None else None

    def statuses(self) -> list[ServerStatus]:
        with self._lock:
            return [self._snapshot(s) for s in self._servers.values()]

    def stop(self, endpoint: str, variant: str | None = None) -> None:
        """Stop the server(s) of an endpoint (one variant, or all) and free their ports."""
        with self._lock:
            keys = [k for k in self._servers if k[0] == endpoint and variant in (None, k[1])]
            servers = [self._servers.pop(k) for k in keys]
        for server in servers:
            self._terminate(server, keep_socket=False)
            self._emit("stopped", server)

    def close(self) -> None:
        """Stop everything; idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            self._terminate(server, keep_socket=False)
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        atexit.unregister(self.close)

    def __enter__(self) -> ModelServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- spawning (always on the supervisor thread) --------------------------------------------

    def _spawn_and_wait(self, server: _Server) -> None:
        done: Future[None] = Future()
        self._requests.put((server, done))
        self._wake()
        done.result(timeout=60)

    def _spawn(self, server: _Server) -> None:
        spec = server.spec
        server.log.parent.mkdir(parents=True, exist_ok=True)
        server.workdir.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        command = [
            self.python,
            str(self.script),
            "serve",
            str(spec.model),
            "--fd",
            str(server.sock.fileno()),
            "--ready-fd",
            str(write_fd),
            "--parent-pid",
            str(os.getpid()),
            "--variant",
            spec.variant,
            "--workdir",
            str(server.workdir),
            "--runtime",
            spec.runtime,
        ]
        for flag, value in (
            ("--sha256", spec.sha256),
            ("--fastpath", spec.fastpath),
            ("--fastpath-sha256", spec.fastpath_sha256),
        ):
            if value is not None:
                command += [flag, str(value)]
        command += list(spec.args)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PLATFORM_VARIABLES)}
        env.update(dict(spec.env))
        try:
            with server.log.open("ab") as log:
                log.write(f"--- starting: {' '.join(command)}\n".encode())
                log.flush()
                server.proc = subprocess.Popen(
                    command,
                    pass_fds=[server.sock.fileno(), write_fd],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # a Ctrl-C in our terminal is ours to relay
                )
        except OSError as exc:
            os.close(read_fd)
            server.last_error = f"cannot start {self.python}: {exc}"
            server.ready_event.set()
            return
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        server.ready_fd = read_fd
        server.ready_buffer = b""
        server.started_at = time.time()
        server.ready_at = None

    # --- the supervisor thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                waiting = {s.ready_fd: s for s in self._servers.values() if s.ready_fd is not None}
            try:
                readable, _, _ = select.select([self._wake_read, *waiting], [], [], 0.2)
            except (OSError, ValueError):  # a descriptor closed under us: look again
                continue
            if self._wake_read in readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_read, 4096)
            while True:
                try:
                    server, done = self._requests.get_nowait()
                except queue.Empty:
                    break
                with self._lock:
                    self._spawn(server)
                done.set_result(None)
            for fd in readable:
                if fd in waiting:
                    self._read_ready(waiting[fd])
            self._check_children()

    def _read_ready(self, server: _Server) -> None:
        assert server.ready_fd is not None
        try:
            chunk = os.read(server.ready_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        server.ready_buffer += chunk
        if b"\n" in server.ready_buffer:
            try:
                line = json.loads(server.ready_buffer.split(b"\n", 1)[0])
            except ValueError:
                line = {}
            with self._lock:
                first = server.status == "starting"
                server.status = "ready"
                server.runtime = line.get("runtime")
                server.ready_at = time.monotonic()
                server.restart_at = None
            self._close_ready(server)
            server.ready_event.set()
            self._emit("ready" if first else "restarted", server)
        elif not chunk:  # closed without a line: the process is exiting
            self._close_ready(server)

    def _close_ready(self, server: _Server) -> None:
        if server.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(server.ready_fd)
            server.ready_fd = None

    def _check_children(self) -> None:
        now = time.monotonic()
        with self._lock:
            servers = list(self._servers.values())
        for server in servers:
            with self._lock:
                if server.status == "restarting" and server.restart_at is not None:
                    if now >= server.restart_at:
                        server.restart_at = None
                        self._spawn(server)
                    continue
                proc = server.proc
                if proc is None or proc.poll() is None or server.status in ("failed", "stopped"):
                    continue
                code = proc.returncode
                server.last_exit_code = code
                server.last_error = f"exited with code {code}: {_tail(server.log)}"
                self._close_ready(server)
                server.proc = None
                if server.status == "starting":  # never came up: start() reports it
                    server.status = "failed"
                    server.ready_event.set()
                    continue
                if server.ready_at is not None and now - server.ready_at >= self.healthy_after:
                    server.consecutive_failures = 0
                server.consecutive_failures += 1
                server.restarts += 1
                if server.consecutive_failures > self.max_consecutive_failures:
                    server.status = "failed"
                    event = "gave_up"
                else:
                    delay = min(
                        self.backoff_max,
                        self.backoff_initial * 2 ** (server.consecutive_failures - 1),
                    )
                    server.status = "restarting"
                    server.restart_at = now + delay
                    event = "crashed"
            self._emit(event, server)

    # --- helpers --------------------------------------------------------------------------------

    def _terminate(self, server: _Server, *, keep_socket: bool) -> None:
        with self._lock:
            server.status = "stopped"
            server.restart_at = None
            proc = server.proc
            server.proc = None
            self._close_ready(server)
        server.ready_event.set()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not keep_socket:
            server.sock.close()

    def _snapshot(self, server: _Server) -> ServerStatus:
        return ServerStatus(
            endpoint=server.spec.endpoint,
            variant=server.spec.variant,
            url=f"http://{HOST}:{server.port}" if server.sock.fileno() >= 0 else "",
            status=server.status,
            pid=server.proc.pid if server.proc is not None else None,
            runtime=server.runtime,
            restarts=server.restarts,
            last_exit_code=server.last_exit_code,
            last_error=server.last_error,
            started_at=server.started_at,
            log=str(server.log),
        )

    def _emit(self, kind: str, server: _Server) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(ServerEvent(kind, self._snapshot(server)))  # type: ignore[arg-type]
        except Exception as exc:  # a reporting problem must not stop supervision
            print(f"model-servers: on_event failed: {exc!r}", file=sys.stderr)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _ping(port: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise ModelServerError(f"/ping answered {response.status}")
    except OSError as exc:
        raise ModelServerError(f"/ping failed: {exc}") from None
    finally:
        conn.close()


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-5:])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80] or "_"


__all__ = [
    "ModelServerError",
    "ModelServers",
    "ServerEvent",
    "ServerSpec",
    "ServerStatus",
]
