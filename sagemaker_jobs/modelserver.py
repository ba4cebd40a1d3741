"""One model version as a standalone HTTP service.

Speaks three contracts at once, so the same model archive serves anywhere:

- **SageMaker bring-your-own-container**: ``GET /ping`` (200 once the model is loaded; the
  server only listens after loading) and ``POST /invocations``; port from
  ``SAGEMAKER_BIND_TO_PORT`` (default 8080).
- **Vertex AI custom containers**: ``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE`` and
  ``AIP_PREDICT_ROUTE`` are honoured as well; ``{"instances": [...]}`` in,
  ``{"predictions": [...]}`` out.
- **The MLflow scoring protocol**, exactly as ``mlcontract.scoring`` parses it (the four JSON
  forms, ``text/csv``; NaN means missing, as MLflow's own client writes it), plus MLflow's
  ``GET /health`` and ``GET /version``: ``mlflow.pyfunc.scoring_server.client.
  ScoringServerClient(host, port)`` works unchanged.

Bad input is a 4xx with ``{"Code": ..., "Message": ...}`` (400 for the body, 411/413/415/431
for the envelope); a fault of ours is a 5xx with the same shape and no internal detail (the
traceback goes to the log). ``GET /info`` describes the model and which runtime serves it.

Run it (no API and no local stack needed)::

    python sagemaker_jobs/modelserver.py serve path/to/model.tar.gz --port 8080 [--sha256 HEX]
    python code/modelserver.py serve .          # from an unpacked model archive
    python sagemaker_jobs/modelserver.py build-context path/to/model.tar.gz OUTDIR

``serve`` takes a model directory or ``model.tar.gz``. With ``--sha256`` the archive is
copied into a private directory while it is hashed, and nothing is unpickled unless the hash
matches (joblib runs code when it loads). A fast path (``fastpath/model.onnx`` +
``report.json``, from ``fastpath.build_fast_path``) is used when the report says it agrees
with scikit-learn: given with ``--fastpath DIR`` or found in ``MODEL_DIR/fastpath``.

**HTTP layer.** One process, one thread, an ``asyncio.Protocol`` over uvloop (when
installed) fed by httptools (llhttp, Node's parser); see ``benchmarks/http_layers.py`` for why
(p50 0.16 ms vs 0.24 ms for uvicorn with a bare ASGI app). Requests are answered inline in
arrival order, so pipelining and keep-alive need no queue. TCP_NODELAY on every connection;
listen backlog 2048; chunked request bodies are accepted, a POST with neither Content-Length
nor chunked encoding gets 411; bodies over ``--max-body-bytes`` (6 MiB, SageMaker's payload
limit) get 413 before they are read; headers over 64 KiB 431; a request that is not complete
``--request-timeout`` seconds after its first byte gets 408 (slow clients cannot hold a
connection open by dribbling); idle keep-alive connections close after
``--keepalive-timeout`` seconds; ``Expect: 100-continue`` is answered.

**Per-request hook** (for the monitoring work): ``ModelApp(..., hook=f)`` calls
``f(variant, status, model_latency_us, overhead_latency_us)`` after every ``/invocations``
(and predict-route) answer, including 4xx/5xx, on the event-loop thread. ``model_latency_us``
is the time inside the predictor (building tensors or the DataFrame and running the model);
``overhead_latency_us`` is the rest of the server's time for the request after the body is in
(parsing, validation, serialization). With no hook the cost is two ``perf_counter_ns`` calls;
a hook must only record (e.g. add to counters that another thread flushes), never block.

Supervision (``iac/local/model_servers.py``): ``--fd N`` serves on an inherited listening
socket (so the address survives restarts and connections queue in the backlog meanwhile),
``--ready-fd N`` gets one JSON line when serving, and ``--parent-pid PID`` makes the server
exit when that process dies (``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import email.utils
import hashlib
import http
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, cast
from urllib.parse import unquote

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mlcontract import archive, scoring  # noqa: E402

SERVER_VERSION: Final = "1.0"
DEFAULT_PORT: Final = 8080
MAX_BODY_BYTES: Final = 6 * 1024 * 1024
MAX_HEADER_BYTES: Final = 64 * 1024
REQUEST_TIMEOUT: Final = 30.0
KEEPALIVE_TIMEOUT: Final = 60.0
MAX_CONNECTIONS: Final = 1024
BACKLOG: Final = 2048
SHUTDOWN_GRACE: Final = 10.0
DEFAULT_MODEL_DIR: Final = "/opt/ml/model"
SERVER_FILES: Final = (
    "modelserver.py",
    "fastpath.py",
    "inference.py",
    "telemetry.py",
    "datacapture.py",
)
INFERENCE_ID_HEADER: Final = b"x-inference-id"
# Fault injection for tests of guarded deployments: a request whose body contains this
# marker gets a 500, as if the model had failed (never set in production).
FAULT_MARKER_VARIABLE: Final = "MLPIPE_FAULT_MARKER"

log = logging.getLogger("mlpipe.modelserver")

RequestHook = Callable[[str, int, int, int], None]
JSON_TYPE: Final = b"application/json"
TEXT_TYPE: Final = b"text/plain; charset=utf-8"

ERROR_CODES: Final = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    406: "NotAcceptableError",
    408: "RequestTimeoutError",
    411: "LengthRequiredError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
    417: "ExpectationFailedError",
    431: "RequestHeaderFieldsTooLargeError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class ModelLoadError(Exception):
    """The model cannot be served (missing, unreadable, or its sha256 does not match)."""


def error_body(status: int, message: str) -> bytes:
    code = ERROR_CODES.get(status, http.HTTPStatus(status).phrase.replace(" ", "") + "Error")
    return json.dumps({"Code": code, "Message": message}).encode()


# --- the model ------------------------------------------------------------------------------


def sha256_file(path: Path, copy_to: Path | None = None) -> str:
    """The file's sha256; with ``copy_to`` the bytes hashed are also the bytes copied, so the
    copy is exactly what was checked (no window to swap the file in between)."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(path.open("rb"))
        target = stack.enter_context(copy_to.open("wb")) if copy_to is not None else None
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            if target is not None:
                target.write(block)
    return digest.hexdigest()


def open_model(path: Path, sha256: str | None, workdir: Path) -> Path:
    """The directory holding model.joblib and metadata.json: ``path`` itself, or ``path``
    (a model.tar.gz) verified and safely extracted under ``workdir``."""
    if path.is_dir():
        if sha256:
            raise ModelLoadError(
                "--sha256 verifies a model.tar.gz; a directory cannot be checked against it"
            )
        directory = path
    elif path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        private = workdir / "model.tar.gz"
        actual = sha256_file(path, copy_to=private)
        if sha256 and actual != sha256.lower():
            private.unlink(missing_ok=True)
            raise ModelLoadError(
                f"{path.name} has sha256 {actual}, expected {sha256.lower()}: refusing to load it"
            )
        target = workdir / "model"
        shutil.rmtree(target, ignore_errors=True)  # nothing of a previous model may linger
        try:
            directory = archive.safe_extract(private, target)
        except archive.ArchiveError as exc:
            raise ModelLoadError(str(exc)) from None
        finally:
            private.unlink(missing_ok=True)
    else:
        raise ModelLoadError(f"no model at {str(path)!r}")
    for name in (archive.MODEL_FILE, archive.METADATA_FILE):
        if not (directory / name).is_file():
            raise ModelLoadError(f"{name} is missing from the model at {str(path)!r}")
    return directory


@dataclass
class ServedModel:
    """A loaded model version: the sklearn pipeline (through inference.py's hooks), and the
    ONNX fast path when its report vouches for it."""

    directory: Path
    metadata: dict[str, Any]
    signature: scoring.Signature
    runtime: str
    runtime_reason: str
    sha256: str | None
    sklearn_model: Any
    fast: Any | None

    def predict(self, batch: scoring.Batch) -> list[Any]:
        if self.fast is not None:
            try:
                result: list[Any] = self.fast.predict(batch)
                return result
            except self._needs_sklearn:
                pass
        return self._sklearn_predict(batch, self.sklearn_model)

    def __post_init__(self) -> None:
        import inference

        self._sklearn_predict = inference.predict_fn
        if self.fast is not None:
            import fastpath

            self._needs_sklearn: type[Exception] = fastpath.NeedsSklearnError
        else:
            self._needs_sklearn = _NeverError

    def describe(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "task": meta.get("task"),
            "algorithm": meta.get("algorithm"),
            "target": meta.get("target"),
            "signature": self.signature.as_list(),
            "classes": meta.get("classes"),
            "runtime": self.runtime,
            "runtime_reason": self.runtime_reason,
            "sha256": self.sha256,
            "sklearn_version": meta.get("sklearn_version"),
        }


class _NeverError(Exception):
    pass


def load_model(
    path: Path,
    *,
    workdir: Path,
    sha256: str | None = None,
    fastpath_dir: Path | None = None,
    fastpath_sha256: str | None = None,
    runtime: str = "auto",
) -> ServedModel:
    """Load a model for serving. ``runtime``: ``auto`` (the fast path when its report says it
    agrees), ``sklearn``, or ``onnx`` (fail unless the fast path can be used)."""
    import inference

    directory = open_model(path, sha256, workdir)
    try:
        loaded = inference.model_fn(str(directory))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, Any] = loaded.metadata
    fast, chosen, reason = None, "sklearn", "runtime sklearn was requested"
    if runtime != "sklearn":
        fast, reason = _load_fast_path(
            fastpath_dir or directory / "fastpath", fastpath_sha256, metadata
        )
        if fast is not None:
            chosen = "onnx"
        elif runtime == "onnx":
            raise ModelLoadError(f"the ONNX fast path cannot be used: {reason}")
    return ServedModel(
        directory=directory,
        metadata=metadata,
        signature=loaded.signature,
        runtime=chosen,
        runtime_reason=reason,
        sha256=sha256,
        sklearn_model=loaded,
        fast=fast,
    )


def _load_fast_path(
    directory: Path, sha256: str | None, metadata: dict[str, Any]
) -> tuple[Any | None, str]:
    import fastpath

    report = fastpath.read_report(directory)
    if report is None:
        return None, f"no fast path report in {directory}"
    if report.get("runtime") != "onnx" or not report.get("agrees"):
        return None, f"the fast path does not agree with scikit-learn: {report.get('reason')}"
    model_path = directory / fastpath.MODEL_FILE
    if not model_path.is_file():
        return None, f"{fastpath.MODEL_FILE} is missing from {directory}"
    data = model_path.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise ModelLoadError(f"{model_path} does not match its recorded sha256")
    try:
        predictor = fastpath.OnnxPredictor(
            data, metadata["signature"]["inputs"], metadata["task"], metadata.get("classes")
        )
    except ImportError as exc:
        return None, f"onnxruntime is not installed ({exc})"
    except Exception as exc:
        return None, f"the fast path does not load: {type(exc).__name__}: {exc}"
    checked = report.get("checked_rows")
    return predictor, f"agrees with scikit-learn on {checked} held-out and probe rows"


# --- the application (independent of the HTTP layer) ----------------------------------------


class App(Protocol):
    """What the HTTP layer serves."""

    def handle(
        self,
        method: bytes,
        path: str,
        content_type: bytes | None,
        accept: bytes | None,
        encoding: bytes | None,
        body: bytes,
        inference_id: str | None = None,
    ) -> tuple[int, bytes, bytes]: ...

    def rejected(self, path: str, status: int) -> None: ...


_ACCEPT_JSON = frozenset({"application/json", "application/*", "*/*", "*"})


def accepts_json(accept: bytes | None) -> bool:
    if not accept:
        return True
    return any(
        part.split(";", 1)[0].strip().lower() in _ACCEPT_JSON
        for part in accept.decode("latin-1").split(",")
    )


class ModelApp:
    """Routes and the invocation path; every route answers JSON."""

    def __init__(
        self,
        model: ServedModel,
        *,
        variant: str = "AllTraffic",
        health_routes: Sequence[str] = ("/ping", "/health"),
        predict_routes: Sequence[str] = ("/invocations",),
        hook: RequestHook | None = None,
        capture: Any | None = None,
        metrics: Callable[[], tuple[int, bytes, bytes]] | None = None,
        fault_marker: bytes | None = None,
    ) -> None:
        """``capture``: a ``datacapture.CaptureWriter`` (sampled requests are queued after
        they are answered); ``metrics``: what ``GET /metrics`` answers (local servers)."""
        import inference

        self.capture = capture
        self.metrics = metrics
        self.fault_marker = fault_marker or None
        self.model = model
        self.variant = variant
        self.hook = hook
        self.health_routes = frozenset(health_routes)
        self.predict_routes = frozenset(predict_routes)
        self._output_fn = inference.output_fn
        self._signature = model.signature
        self._health = json.dumps({"status": "Healthy", "runtime": model.runtime}).encode()
        self.started_at = time.time()
        self.served = 0

    def info(self) -> dict[str, Any]:
        return {
            "server_version": SERVER_VERSION,
            "pid": os.getpid(),
            "variant": self.variant,
            "started_at": self.started_at,
            "requests": self.served,
            "model": self.model.describe(),
            "runtime": self.model.runtime,
            "runtime_reason": self.model.runtime_reason,
            "predict_routes": sorted(self.predict_routes),
            "health_routes": sorted(self.health_routes),
        }

    def handle(
        self,
        method: bytes,
        path: str,
        content_type: bytes | None,
        accept: bytes | None,
        encoding: bytes | None,
        body: bytes,
        inference_id: str | None = None,
    ) -> tuple[int, bytes, bytes]:
        if path in self.predict_routes:
            if method != b"POST":
                return 405, error_body(405, f"{path} takes POST"), JSON_TYPE
            answer = self.invoke(content_type, accept, encoding, body)
            capture = self.capture
            if capture is not None and answer[0] == 200 and capture.sampled():
                capture.capture(
                    inference_id or "",
                    self.variant,
                    body,
                    content_type.decode("latin-1") if content_type else "application/json",
                    answer[1],
                )
            return answer
        if path == "/metrics" and self.metrics is not None and method == b"GET":
            return self.metrics()
        if method not in (b"GET", b"HEAD"):
            if path in self.health_routes or path in ("/info", "/version"):
                return 405, error_body(405, f"{path} takes GET"), JSON_TYPE
            return 404, error_body(404, f"no route {path}"), JSON_TYPE
        if path in self.health_routes:
            return 200, self._health, JSON_TYPE
        if path == "/info":
            return 200, json.dumps(self.info()).encode(), JSON_TYPE
        if path == "/version":
            return 200, f"mlpipe-modelserver {SERVER_VERSION}".encode(), TEXT_TYPE
        return 404, error_body(404, f"no route {path}"), JSON_TYPE

    def invoke(
        self,
        content_type: bytes | None,
        accept: bytes | None,
        encoding: bytes | None,
        body: bytes,
    ) -> tuple[int, bytes, bytes]:
        start = time.perf_counter_ns()
        model_ns = 0
        self.served += 1
        status, payload = 200, b""
        if encoding is not None and encoding.strip().lower() != b"identity":
            status = 415
            payload = error_body(
                415, f"Content-Encoding {encoding.decode('latin-1')!r} is not supported"
            )
        elif accept is not None and not accepts_json(accept):
            status = 406
            payload = error_body(406, "responses are application/json")
        else:
            try:
                batch = scoring.parse(
                    body,
                    content_type.decode("latin-1") if content_type is not None else None,
                    self._signature,
                )
                before = time.perf_counter_ns()
                if self.fault_marker is not None and self.fault_marker in body:
                    raise RuntimeError("fault injected (MLPIPE_FAULT_MARKER)")
                predictions = self.model.predict(batch)
                model_ns = time.perf_counter_ns() - before
                payload = self._output_fn(predictions)[0].encode()
            except scoring.RequestError as exc:
                status, payload = exc.status, error_body(exc.status, str(exc))
            except Exception:
                log.exception("prediction failed")
                status = 500
                payload = error_body(500, "the model failed to predict; see the server log")
        if self.hook is not None:
            total = time.perf_counter_ns() - start
            self._observe(status, model_ns // 1000, (total - model_ns) // 1000)
        return status, payload, JSON_TYPE

    def rejected(self, path: str, status: int) -> None:
        """An invocation refused by the HTTP layer (413, 408, ...): counted like any other."""
        if self.hook is not None and path in self.predict_routes:
            self._observe(status, 0, 0)

    def _observe(self, status: int, model_us: int, overhead_us: int) -> None:
        assert self.hook is not None
        try:
            self.hook(self.variant, status, model_us, overhead_us)
        except Exception:
            log.exception("the request hook failed; it is removed")
            self.hook = None


# --- the HTTP layer -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    fd: int | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    request_timeout: float = REQUEST_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    backlog: int = BACKLOG
    shutdown_grace: float = SHUTDOWN_GRACE


_INFERENCE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}


class _StopParsingError(Exception):
    """Raised from a parser callback to stop parsing a connection that has been answered."""


class _Connection(asyncio.Protocol):
    """One client connection: httptools parses, the app answers inline, in order."""

    def __init__(self, server: HttpServer) -> None:
        import httptools

        self.server = server
        self.app = server.app
        self.config = server.config
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.busy = False
        self.started = 0.0
        self.last_active = self.loop.time()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.path = ""
        self.method = b""
        self.head_bytes = 0
        self.content_type: bytes | None = None
        self.accept: bytes | None = None
        self.encoding: bytes | None = None
        self.expect: bytes | None = None
        self.length: int | None = None
        self.chunked = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.inference_id: str | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self.server.connections) >= self.config.max_connections:
            self._send(503, error_body(503, "too many connections"), JSON_TYPE, keep_alive=False)
            return
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        import httptools

        if self.closing:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Answered already (we ignore Upgrade); what follows is not HTTP/1.1.
            self._close()
        except httptools.HttpParserCallbackError as exc:
            if not self.closing:
                cause = exc.__cause__ or exc.__context__
                log.error("request handling failed", exc_info=cause)
                self._fail(500, "internal error; see the server log")
        except httptools.HttpParserError as exc:
            if not self.closing:
                self._fail(400, f"malformed HTTP request: {exc}")

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.closing:
            raise _StopParsingError
        self._reset()
        self.busy = True
        self.started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        lowered = name.lower()
        if lowered == b"content-type":
            self.content_type = value
        elif lowered == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                self.length = None
        elif lowered == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif lowered == b"accept":
            self.accept = value
        elif lowered == b"content-encoding":
            self.encoding = value
        elif lowered == b"expect":
            self.expect = value
        elif lowered == INFERENCE_ID_HEADER:
            given = value.decode("latin-1")
            self.inference_id = given if _INFERENCE_ID.fullmatch(given) else None

    def on_headers_complete(self) -> None:
        self.method = self.parser.get_method()
        self.path = self._path()
        if self.method == b"POST":
            if self.length is None and not self.chunked:
                self._reject(411, "send the body with Content-Length or chunked encoding")
            if self.length is not None and self.length > self.config.max_body_bytes:
                self._reject(413, self._too_large())
        if self.expect is not None and self.transport is not None:
            if self.expect.strip().lower() != b"100-continue":
                self._reject(417, f"Expect {self.expect.decode('latin-1')!r} is not supported")
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.config.max_body_bytes:
            self._reject(413, self._too_large())
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        extra = b""
        if self.method == b"POST":
            # Every answered POST carries its inference id (the caller's, or a new one): the
            # key that joins captured requests with feedback.
            if self.inference_id is None:
                self.inference_id = os.urandom(16).hex()
            extra = b"X-Inference-Id: " + self.inference_id.encode("latin-1") + b"\r\n"
            status, payload, content_type = self.app.handle(
                self.method,
                self.path,
                self.content_type,
                self.accept,
                self.encoding,
                body,
                self.inference_id,
            )
        else:
            status, payload, content_type = self.app.handle(
                self.method, self.path, self.content_type, self.accept, self.encoding, body
            )
        if self.method == b"HEAD":
            payload = b""
        self._send(
            status, payload, content_type, keep_alive=self.parser.should_keep_alive(), extra=extra
        )
        self.busy = False
        self.last_active = self.loop.time()

    # helpers

    def _path(self) -> str:
        url = self.url
        if not url.startswith(b"/"):  # absolute-form (a proxy's request line)
            import httptools

            try:
                url = httptools.parse_url(url).path or b"/"
            except httptools.HttpParserInvalidURLError:
                return ""
        raw = url.split(b"?", 1)[0].decode("latin-1")
        return unquote(raw) if "%" in raw else raw

    def _too_large(self) -> str:
        return (
            f"the body is larger than {self.config.max_body_bytes} bytes; "
            "send fewer rows per request or use a batch prediction"
        )

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > self.config.max_header_bytes:
            self._reject(
                431, f"the request line and headers exceed {self.config.max_header_bytes} bytes"
            )

    def _reject(self, status: int, message: str) -> None:
        """Answer from inside a parser callback and stop reading this connection."""
        self.app.rejected(self.path, status)
        self._fail(status, message)
        raise _StopParsingError

    def _fail(self, status: int, message: str) -> None:
        self._send(status, error_body(status, message), JSON_TYPE, keep_alive=False)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: bytes,
        *,
        keep_alive: bool,
        extra: bytes = b"",
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = (
            _STATUS_LINES[status]
            + b"Content-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n"
            + self.server.date_line
            + extra
        )
        if not keep_alive:
            head += b"Connection: close\r\n"
        elif self.parser.get_http_version() == "1.0":
            head += b"Connection: keep-alive\r\n"
        transport.write(head + b"\r\n" + payload)
        if not keep_alive:
            self._close()

    def _close(self) -> None:
        self.closing = True
        self.busy = False
        if self.transport is not None:
            self.transport.close()  # after what is buffered has been written

    def timed_out(self) -> None:
        self.app.rejected(self.path, 408)
        self._fail(408, f"the request was not complete within {self.config.request_timeout:g} s")


class HttpServer:
    """Serves an App until stop() (or SIGTERM/SIGINT when run by serve_forever)."""

    def __init__(self, app: App, config: HttpConfig) -> None:
        self.app = app
        self.config = config
        self.connections: set[_Connection] = set()
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.date_line = b""
        self.address: tuple[str, int] = ("", 0)
        self._stopping: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None

    def _listening_socket(self) -> socket.socket:
        if self.config.fd is not None:
            sock = socket.socket(fileno=self.config.fd)
        else:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.create_server(
                (self.config.host, self.config.port), family=family, backlog=self.config.backlog
            )
        sock.setblocking(False)
        return sock

    async def start(self) -> tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._tick()
        sock = self._listening_socket()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=self.config.backlog
        )
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        return self.address

    def _tick(self) -> None:
        """Once a second: the Date header, and closing connections that timed out."""
        self.date_line = b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.closing:
                continue
            if conn.busy:
                if now - conn.started > self.config.request_timeout:
                    conn.timed_out()
            elif now - conn.last_active > self.config.keepalive_timeout:
                conn._close()
        self.loop.call_later(1.0, self._tick)

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def wait(self) -> None:
        assert self._stopping is not None and self._server is not None
        await self._stopping.wait()
        self._server.close()  # no new connections
        deadline = self.loop.time() + self.config.shutdown_grace
        while any(c.busy for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn._close()
        await asyncio.sleep(0)  # let the transports flush and close


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def serve_forever(
    app: App,
    config: HttpConfig,
    *,
    ready: Callable[[tuple[str, int]], None] | None = None,
    on_server: Callable[[HttpServer], None] | None = None,
) -> None:
    """Run ``app`` until SIGTERM/SIGINT (or ``HttpServer.stop``)."""
    server = HttpServer(app, config)

    async def main() -> None:
        address = await server.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, server.stop)
        if on_server is not None:
            on_server(server)
        if ready is not None:
            ready(address)
        await server.wait()

    # asyncio.Runner is Python 3.11+; the SageMaker image (and the job environment) run 3.10.
    loop = _event_loop_factory()()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


# --- living and dying with a supervisor -----------------------------------------------------

PR_SET_PDEATHSIG: Final = 1


def watch_parent(parent_pid: int, on_orphaned: Callable[[], None]) -> None:
    """Exit with the parent, even when it is killed with SIGKILL: the kernel sends us SIGTERM
    when it dies (Linux prctl), and a watchdog thread notices a changed parent pid elsewhere.
    The supervisor spawns servers from one long-lived thread, since PDEATHSIG fires when the
    spawning *thread* exits."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watchdog() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        log.warning("parent process %d is gone; shutting down", parent_pid)
        on_orphaned()
        time.sleep(SHUTDOWN_GRACE + 5)
        os._exit(1)  # the graceful stop did not finish

    if os.getppid() != parent_pid:
        on_orphaned()
    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


# --- configuration from the platform's environment ------------------------------------------


def resolve_port(cli_port: int | None, env: Mapping[str, str]) -> int:
    """--port, else SAGEMAKER_BIND_TO_PORT, else AIP_HTTP_PORT, else 8080."""
    if cli_port is not None:
        return cli_port
    for name in ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT"):
        value = env.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise SystemExit(f"{name}={value!r} is not a port number") from None
    return DEFAULT_PORT


def routes_from_env(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(health routes, predict routes): SageMaker's and MLflow's always, Vertex AI's when set."""
    health = ["/ping", "/health"]
    predict = ["/invocations"]
    if env.get("AIP_HEALTH_ROUTE"):
        health.append(env["AIP_HEALTH_ROUTE"])
    if env.get("AIP_PREDICT_ROUTE"):
        predict.append(env["AIP_PREDICT_ROUTE"])
    return health, predict


# --- build context --------------------------------------------------------------------------


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements_for(metadata: dict[str, Any], *, fast_path: bool) -> list[str]:
    """Pinned requirements: the versions metadata.json records for the libraries the pickle
    depends on; this environment's versions for the rest (marked as such)."""
    lines = ["# Generated by modelserver.py build-context."]
    recorded = {
        "scikit-learn": metadata.get("sklearn_version"),
        "pandas": metadata.get("pandas_version"),
        "numpy": metadata.get("numpy_version"),
        "joblib": metadata.get("joblib_version"),
    }
    for name, version in recorded.items():
        if version:
            lines.append(f"{name}=={version}  # recorded in metadata.json")
        else:
            here = _installed(name)
            if here:
                lines.append(f"{name}=={here}  # not recorded in metadata.json: this environment's")
            else:
                lines.append(name)
    serving = ["httptools", "uvloop"] + (["onnxruntime"] if fast_path else [])
    for name in serving:
        here = _installed(name)
        marker = '; sys_platform != "win32"' if name == "uvloop" else ""
        lines.append(f"{name}=={here}{marker}  # the model server" if here else f"{name}{marker}")
    return lines


DOCKERFILE = """\
# Generated by modelserver.py build-context: one model version as a container.
# Serves SageMaker (/ping, /invocations on $SAGEMAKER_BIND_TO_PORT, default 8080), Vertex AI
# ($AIP_HTTP_PORT, $AIP_HEALTH_ROUTE, $AIP_PREDICT_ROUTE) and MLflow scoring clients.
#   docker build -t {tag} .
#   docker run -p 8080:8080 {tag}
FROM python:{python}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLPIPE_SERVER_HOST=0.0.0.0
COPY requirements.txt /opt/ml/requirements.txt
RUN pip install --no-cache-dir -r /opt/ml/requirements.txt
COPY model/ /opt/ml/model/
RUN useradd --system --uid 10001 model
USER 10001
WORKDIR /opt/ml/model
EXPOSE 8080
# SageMaker runs the image with the argument "serve"; the model then comes from /opt/ml/model.
ENTRYPOINT ["python", "/opt/ml/model/code/modelserver.py"]
CMD ["serve", "/opt/ml/model"]
"""


def build_context(
    model: Path,
    out_dir: Path,
    *,
    sha256: str | None = None,
    fastpath_dir: Path | None = None,
    fastpath_sha256: str | None = None,
    tag: str = "mlpipe-model",
) -> Path:
    """A Docker build context in ``out_dir``: Dockerfile, requirements.txt and ``model/``
    (the unpacked model, its ``code/`` with this server, and the fast path if any)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"{out_dir} exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlpipe-context-") as scratch:
        source = open_model(model, sha256, Path(scratch))
        shutil.copytree(
            source,
            out_dir / "model",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "fastpath"),
        )
    target = out_dir / "model"
    code = target / archive.CODE_DIR
    code.mkdir(exist_ok=True)
    # The archive's own code serves it; what it lacks (older archives) comes from here.
    here = Path(_HERE)
    for name in SERVER_FILES:
        if not (code / name).exists():
            shutil.copyfile(here / name, code / name)
    if not (code / "mlcontract").exists():
        shutil.copytree(
            here / "mlcontract", code / "mlcontract", ignore=shutil.ignore_patterns("__pycache__")
        )
    fast_path = False
    source_fast = fastpath_dir or (model / "fastpath" if model.is_dir() else None)
    if source_fast is not None and (source_fast / "report.json").is_file():
        import fastpath

        report = fastpath.read_report(source_fast) or {}
        onnx_file = source_fast / fastpath.MODEL_FILE
        if report.get("runtime") == "onnx" and onnx_file.is_file():
            if fastpath_sha256 and sha256_file(onnx_file) != fastpath_sha256.lower():
                raise ModelLoadError(f"{onnx_file} does not match its recorded sha256")
            (target / "fastpath").mkdir()
            shutil.copyfile(onnx_file, target / "fastpath" / fastpath.MODEL_FILE)
            fast_path = True
        (target / "fastpath").mkdir(exist_ok=True)
        shutil.copyfile(source_fast / "report.json", target / "fastpath" / "report.json")
    metadata = json.loads((target / archive.METADATA_FILE).read_text(encoding="utf-8"))
    python = metadata.get("python_version") or platform.python_version()
    python = ".".join(str(python).split(".")[:2])
    (out_dir / "requirements.txt").write_text(
        "\n".join(requirements_for(metadata, fast_path=fast_path)) + "\n", encoding="utf-8"
    )
    (out_dir / "Dockerfile").write_text(DOCKERFILE.format(python=python, tag=tag), encoding="utf-8")
    return out_dir


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserver.py", description="Serve one mlpipe model version over HTTP."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a model directory or model.tar.gz")
    serve.add_argument(
        "model",
        nargs="?",
        default=os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR),
        help="model directory or model.tar.gz (default $SM_MODEL_DIR or /opt/ml/model)",
    )
    serve.add_argument("--sha256", default=os.environ.get("MLPIPE_MODEL_SHA256"))
    serve.add_argument(
        "--fastpath", type=Path, default=None, help="directory with model.onnx + report.json"
    )
    serve.add_argument("--fastpath-sha256", default=None)
    serve.add_argument("--runtime", choices=("auto", "onnx", "sklearn"), default="auto")
    serve.add_argument("--host", default=os.environ.get("MLPIPE_SERVER_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--fd", type=int, default=None, help="serve on this inherited listening socket"
    )
    serve.add_argument(
        "--ready-fd", type=int, default=None, help="write one JSON line here when serving"
    )
    serve.add_argument("--parent-pid", type=int, default=None, help="exit when this process dies")
    serve.add_argument("--variant", default=os.environ.get("MLPIPE_VARIANT", "AllTraffic"))
    serve.add_argument("--workdir", type=Path, default=None, help="where an archive is unpacked")
    serve.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("MLPIPE_MODEL_THREADS", "1")),
        help="native threads per prediction (OpenMP/BLAS); default 1",
    )
    serve.add_argument("--endpoint", default=os.environ.get("MLPIPE_ENDPOINT", "local"))
    serve.add_argument("--model-version", default=os.environ.get("MLPIPE_MODEL_VERSION", "0"))
    serve.add_argument(
        "--metrics",
        choices=("off", "pull", "emf"),
        default=os.environ.get("MLPIPE_SERVER_METRICS", "off"),
        help="endpoint metrics: pull (GET /metrics, the local stack), emf (stdout, AWS)",
    )
    serve.add_argument(
        "--capture-root",
        type=Path,
        default=None,
        help="local data capture: the object store's root (records under datacapture/)",
    )
    serve.add_argument("--capture-percent", type=float, default=100.0)
    serve.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    serve.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT)
    serve.add_argument("--keepalive-timeout", type=float, default=KEEPALIVE_TIMEOUT)
    serve.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    context = commands.add_parser("build-context", help="write a Docker build context")
    context.add_argument("model", type=Path)
    context.add_argument("out_dir", type=Path)
    context.add_argument("--sha256", default=None)
    context.add_argument("--fastpath", type=Path, default=None)
    context.add_argument("--fastpath-sha256", default=None)
    context.add_argument("--tag", default="mlpipe-model")
    return parser


THREAD_VARIABLES: Final = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_native_threads(threads: int) -> None:
    """One server answers one request at a time; OpenMP/BLAS thread pools only add spin-waits
    and contention on a shared machine (scikit-learn's HistGradientBoosting went from 20 ms to
    seconds at p99 under load). Must run before numpy is imported; explicit settings win."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(max(1, threads)))


def _serve(args: argparse.Namespace) -> int:
    limit_native_threads(args.threads)
    stopper: list[Callable[[], None]] = []
    orphaned = threading.Event()

    def on_orphaned() -> None:
        orphaned.set()
        if stopper:
            stopper[0]()

    if args.parent_pid is not None:
        watch_parent(args.parent_pid, on_orphaned)
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="mlpipe-model-"))
    closers: list[Callable[[], None]] = []
    try:
        try:
            model = load_model(
                Path(args.model),
                workdir=scratch,
                sha256=args.sha256,
                fastpath_dir=args.fastpath,
                fastpath_sha256=args.fastpath_sha256,
                runtime=args.runtime,
            )
        except ModelLoadError as exc:
            log.error("%s", exc)
            return 2
        if orphaned.is_set():
            return 1
        health, predict = routes_from_env(os.environ)
        tel, writer = _monitoring(args)
        marker = os.environ.get(FAULT_MARKER_VARIABLE)
        app = ModelApp(
            model,
            variant=args.variant,
            health_routes=health,
            predict_routes=predict,
            hook=tel.record if tel is not None else None,
            capture=writer,
            metrics=_metrics_route(tel) if tel is not None and args.metrics == "pull" else None,
            fault_marker=marker.encode() if marker else None,
        )
        closers.extend(c.stop for c in (tel, writer) if c is not None)
        config = HttpConfig(
            host=args.host,
            port=resolve_port(args.port, os.environ),
            fd=args.fd,
            max_body_bytes=args.max_body_bytes,
            request_timeout=args.request_timeout,
            keepalive_timeout=args.keepalive_timeout,
            max_connections=args.max_connections,
        )

        def ready(address: tuple[str, int]) -> None:
            log.info(
                "serving %s (%s, runtime %s) on http://%s:%d",
                args.model,
                model.metadata.get("algorithm"),
                model.runtime,
                *address,
            )
            if args.ready_fd is not None:
                line = {"port": address[1], "pid": os.getpid(), "runtime": model.runtime}
                with contextlib.suppress(OSError):
                    os.write(args.ready_fd, (json.dumps(line) + "\n").encode())
                    os.close(args.ready_fd)

        def on_server(server: HttpServer) -> None:
            def stop() -> None:
                server.loop.call_soon_threadsafe(server.stop)

            stopper.append(stop)
            if orphaned.is_set():
                stop()

        try:
            serve_forever(app, config, ready=ready, on_server=on_server)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", config.host, config.port, exc)
            return 3
        return 0
    finally:
        for close in closers:  # flush the last metrics and captured requests
            with contextlib.suppress(Exception):
                close()
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _monitoring(args: argparse.Namespace) -> tuple[Any | None, Any | None]:
    """The telemetry (``--metrics``) and the data-capture writer (``--capture-root``)."""
    tel = writer = None
    if args.metrics != "off":
        import telemetry

        tel = telemetry.Telemetry(args.endpoint, args.model_version, variant=args.variant)
        interval = min(10.0, float(os.environ.get("MLPIPE_METRICS_FLUSH_SECONDS", "10")))
        sink = telemetry.BufferSink() if args.metrics == "pull" else telemetry.EmfSink()
        tel.start(sink, interval=interval)
    if args.capture_root is not None and args.capture_percent > 0:
        import datacapture

        writer = datacapture.CaptureWriter(
            args.capture_root,
            args.endpoint,
            sampling_percent=args.capture_percent,
            interval=min(10.0, float(os.environ.get("MLPIPE_METRICS_FLUSH_SECONDS", "10"))),
        )
        writer.start()
    return tel, writer


def _metrics_route(tel: Any) -> Callable[[], tuple[int, bytes, bytes]]:
    import telemetry

    return lambda: telemetry.metrics_response(tel)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        out = build_context(
            args.model,
            args.out_dir,
            sha256=args.sha256,
            fastpath_dir=args.fastpath,
            fastpath_sha256=args.fastpath_sha256,
            tag=args.tag,
        )
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
