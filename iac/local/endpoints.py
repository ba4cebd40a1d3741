"""The endpoint runtime on this machine: every endpoint is served by model server processes
(``sagemaker_jobs/modelserver.py``, one per model version = variant), supervised by
``iac.local.model_servers.ModelServers`` and run with the job environment's Python (the
SageMaker image's scikit-learn), as SageMaker runs one container per production variant.

- **Trust.** joblib runs code when it loads, so an archive is only served if its bytes match
  the sha256 recorded on its version: checked here when it is fetched from the store (a
  mismatch is refused and nothing is kept), and again by the server while it copies the
  archive into its private work dir, before anything is unpickled. The same holds for the
  ONNX fast path (``fastpath_sha256``).
- **Routing.** Each endpoint has variants with weights; a request goes to one variant picked
  by weight (a seeded generator, so tests can check shares), over a keep-alive connection
  pool (one connection per thread and server). A ``shadow`` variant gets a copy of each
  request after the caller's answer is chosen, from a bounded queue served by one thread;
  its answers are counted and compared, never returned (and captured by its own server when
  data capture is on).
- **Guarded deployments** (``start_rollout``): the new version starts as its own variant
  beside the current one; a driver thread moves traffic by the strategy (all at once, canary,
  linear) and, during every bake, watches the new variant's 5xx rate and p99 latency as seen
  here; a breach sends all traffic back and stops the new variant. ``on_rollout_end`` is
  called when a rollout ends (the domain then moves the endpoint record or the alias).
- **Restarts.** Endpoint configs persist under ``root/configs``: a restarted stack starts the
  same servers again (``warm``); a rollout in flight when the stack stopped is rolled back.
  A crashed server is restarted by the supervisor at the same URL, and reported (``restarts``,
  ``last_error``) by ``describe``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import NotFoundError
from chalicelib.ports import (
    TERMINAL_ROLLOUTS,
    Deployment,
    EndpointNotReadyError,
    ModelFailedError,
    ModelInputError,
    ObjectStore,
    Rollout,
    RolloutState,
)
from iac.local.model_servers import ModelServerError, ModelServers, ServerSpec, ServerStatus
from mlcontract import archive

log = logging.getLogger("mlpipe.local.endpoints")

FASTPATH_FILES = ("model.onnx", "report.json")
SHADOW_QUEUE = 1000
STATS_WINDOW = 200_000  # request outcomes kept per variant for rollback decisions


class ModelLoadError(EndpointNotReadyError):
    """The artefact does not match its recorded sha256, or its server could not load it."""


@dataclass
class _Variant:
    deployment: Deployment
    weight: float
    shadow: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"deployment": asdict(self.deployment), "weight": self.weight, "shadow": self.shadow}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> _Variant:
        return _Variant(Deployment(**raw["deployment"]), float(raw["weight"]), bool(raw["shadow"]))


@dataclass
class _RolloutRun:
    rollout: Rollout
    status: str = "IN_PROGRESS"
    new_percent: float = 0.0
    reason: str | None = None
    phase_started: float = 0.0  # monotonic: start of the current bake
    phase_wall: float = 0.0  # time.time() of the same instant (persisted)
    observed: dict[str, Any] = field(default_factory=dict)

    def state(self) -> RolloutState:
        return RolloutState(self.status, self.new_percent, self.reason, dict(self.observed))  # type: ignore[arg-type]

    def as_json(self) -> dict[str, Any]:
        return {
            "rollout": {
                **asdict(self.rollout),
                "current": asdict(self.rollout.current),
                "new": asdict(self.rollout.new),
            },
            "status": self.status,
            "new_percent": self.new_percent,
            "reason": self.reason,
            "observed": self.observed,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> _RolloutRun:
        r = dict(raw["rollout"])
        r["current"] = Deployment(**r["current"])
        r["new"] = Deployment(**r["new"])
        run = _RolloutRun(Rollout(**r), raw["status"], float(raw["new_percent"]), raw["reason"])
        run.observed = dict(raw.get("observed") or {})
        return run


@dataclass
class _Stats:
    """Outcomes of requests forwarded to one variant: (monotonic time, status, latency ms)."""

    outcomes: deque[tuple[float, int, float]] = field(
        default_factory=lambda: deque(maxlen=STATS_WINDOW)
    )

    def since(self, start: float) -> dict[str, Any]:
        window = [o for o in list(self.outcomes) if o[0] >= start]
        n = len(window)
        errors = sum(1 for o in window if o[1] >= 500)
        latencies = sorted(o[2] for o in window)
        p99 = latencies[min(n - 1, int(0.99 * n))] if n else None
        return {
            "requests": n,
            "errors_5xx": errors,
            "error_rate": errors / n if n else None,
            "p99_ms": round(p99, 3) if p99 is not None else None,
        }


@dataclass
class _Shadow:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    agreed: int = 0
    dropped: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))


class LocalEndpointRuntime:
    def __init__(
        self,
        root: Path,
        store: ObjectStore,
        *,
        python: str | None = None,
        servers: ModelServers | None = None,
        capture_root: Path | None = None,
        capture_percent: Callable[[str], float] | None = None,
        server_env: Callable[[Deployment], Mapping[str, str]] | None = None,
        seed: int | None = None,
        tick_seconds: float = 0.1,
        startup_timeout: float | None = None,
    ) -> None:
        from iac.local.jobs import job_python

        self.root = Path(root)
        self.store = store
        self.capture_root = capture_root
        self.capture_percent = capture_percent
        self.server_env = server_env
        self.on_rollout_end: Callable[[str, str], None] | None = None
        self.servers = servers or ModelServers(
            self.root / "servers",
            python=python or job_python(),
            startup_timeout=startup_timeout
            or float(os.environ.get("MLPIPE_MODEL_SERVER_STARTUP_TIMEOUT", "120")),
        )
        self._own_servers = servers is None
        self._variants: dict[str, list[_Variant]] = {}
        self._rollouts: dict[str, _RolloutRun] = {}  # endpoint -> its latest rollout
        self._failed: dict[str, str] = {}  # endpoint -> why it cannot serve
        self._stats: dict[tuple[str, str], _Stats] = {}
        self._served_spec: dict[tuple[str, str], ServerSpec] = {}
        self._shadow: dict[str, _Shadow] = {}
        self._lock = threading.RLock()  # routes, rollouts, configs
        self._deploy_lock = threading.Lock()  # one process change at a time
        self._random = random.Random(seed)  # noqa: S311 - traffic split, not security
        self._pool = threading.local()
        self._shadow_queue: queue.Queue[tuple[str, str, str, bytes, str, bytes]] = queue.Queue(
            SHADOW_QUEUE
        )
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._threads = [
            threading.Thread(target=self._drive, name="rollouts", daemon=True),
            threading.Thread(target=self._shadow_loop, name="shadow", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._load_configs()

    # --- configs -------------------------------------------------------------------------

    def _config_path(self, endpoint: str) -> Path:
        return self.root / "configs" / f"{endpoint}.json"

    def _load_configs(self) -> None:
        configs = self.root / "configs"
        for path in sorted(configs.glob("*.json")) if configs.exists() else []:
            try:
                raw = json.loads(path.read_text())
                if "variants" not in raw:  # a config of the in-process runtime
                    raw = {"variants": [{"deployment": raw, "weight": 100.0, "shadow": False}]}
                self._variants[path.stem] = [_Variant.from_json(v) for v in raw["variants"]]
                if raw.get("rollout"):
                    self._rollouts[path.stem] = _RolloutRun.from_json(raw["rollout"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("endpoint config %s is unreadable: %s", path, exc)

    def _save(self, endpoint: str) -> None:
        path = self._config_path(endpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        rollout = self._rollouts.get(endpoint)
        body = {
            "variants": [v.as_json() for v in self._variants.get(endpoint, [])],
            "rollout": rollout.as_json() if rollout is not None else None,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    # --- artefacts -----------------------------------------------------------------------

    def _archive(self, deployment: Deployment) -> Path:
        """The archive, fetched once per sha256 and verified here before any server sees it."""
        path = self.root / "models" / f"{deployment.sha256}.tar.gz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                self.store.get_file(deployment.artefact_key, tmp)
            except FileNotFoundError:
                raise ModelLoadError(
                    f"the artefact of {deployment.model} v{deployment.version} is missing"
                ) from None
            os.replace(tmp, path)
        if archive.sha256_of(path) != deployment.sha256:
            path.unlink(missing_ok=True)
            raise ModelLoadError(
                f"the artefact of {deployment.model} v{deployment.version} does not match its "
                "recorded sha256; refusing to load it"
            )
        return path

    def _fastpath(self, deployment: Deployment) -> Path | None:
        if not deployment.fastpath_key or not deployment.fastpath_sha256:
            return None
        folder = self.root / "fastpath" / deployment.fastpath_sha256
        if not (folder / "report.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for name in FASTPATH_FILES:
                self.store.get_file(f"{deployment.fastpath_key}/{name}", folder / name)
        return folder

    def _spec(self, deployment: Deployment) -> ServerSpec:
        args = [
            "--endpoint", deployment.endpoint,
            "--model-version", str(deployment.version),
            "--metrics", "pull",
        ]  # fmt: skip
        if self.capture_root is not None:
            percent = self.capture_percent(deployment.endpoint) if self.capture_percent else 100.0
            args += ["--capture-root", str(self.capture_root), "--capture-percent", str(percent)]
        env = dict(self.server_env(deployment)) if self.server_env is not None else {}
        fast = self._fastpath(deployment)
        return ServerSpec(
            deployment.endpoint,
            deployment.variant,
            self._archive(deployment),
            sha256=deployment.sha256,
            fastpath=fast,
            fastpath_sha256=deployment.fastpath_sha256 if fast is not None else None,
            args=tuple(args),
            env=tuple(sorted(env.items())),
        )

    def _start(self, deployment: Deployment, *, restart: bool = False) -> ServerStatus:
        """A ready server for ``deployment`` (kept if one already serves the same bytes)."""
        current = self.servers.status(deployment.endpoint, deployment.variant)
        spec = self._spec(deployment)
        if (
            not restart
            and current is not None
            and current.status in ("ready", "restarting", "starting")
            and self._served_spec.get((deployment.endpoint, deployment.variant)) == spec
        ):
            return current
        try:
            status = self.servers.start(spec)
        except ModelServerError as exc:
            raise ModelLoadError(
                f"{deployment.model} v{deployment.version} could not be served: {exc}"
            ) from None
        self._served_spec[(deployment.endpoint, deployment.variant)] = spec
        return status

    # --- the port ------------------------------------------------------------------------

    def deploy(self, deployment: Deployment) -> None:
        """Serve ``deployment`` with all traffic (its server is up before traffic moves;
        the previous version's server stops after)."""
        with self._deploy_lock:
            endpoint = deployment.endpoint
            with self._lock:
                run = self._rollouts.get(endpoint)
                if run is not None and run.status not in TERMINAL_ROLLOUTS:
                    raise EndpointNotReadyError(
                        f"a deployment ({run.rollout.id}) is in progress on {endpoint!r}"
                    )
            self._start(deployment)
            with self._lock:
                old = self._variants.get(endpoint, [])
                self._variants[endpoint] = [_Variant(deployment, 100.0)]
                self._failed.pop(endpoint, None)
                self._save(endpoint)
            for variant in old:
                if variant.deployment.variant != deployment.variant:
                    self._stop_variant(endpoint, variant.deployment.variant)

    def _stop_variant(self, endpoint: str, variant: str) -> None:
        self.servers.stop(endpoint, variant)
        self._served_spec.pop((endpoint, variant), None)

    def warm(self) -> dict[str, str]:
        """Start the servers of every configured endpoint (stack start); a rollout that was
        in flight is rolled back. Returns the endpoints that cannot serve, with why."""
        with self._lock:
            endpoints = list(self._variants)
        ended: list[tuple[str, str]] = []
        for endpoint in endpoints:
            with self._lock:
                run = self._rollouts.get(endpoint)
                if run is not None and run.status not in TERMINAL_ROLLOUTS:
                    run.status, run.new_percent = "ROLLED_BACK", 0.0
                    run.reason = "the local stack restarted during the deployment"
                    current = run.rollout.current.variant
                    self._variants[endpoint] = [
                        _Variant(v.deployment, 100.0)
                        for v in self._variants[endpoint]
                        if v.deployment.variant == current
                    ]
                    self._save(endpoint)
                    ended.append((endpoint, run.rollout.id))
                variants = list(self._variants[endpoint])
            for variant in variants:
                try:
                    self._start(variant.deployment)
                except (EndpointNotReadyError, OSError) as exc:
                    self._failed[endpoint] = str(exc)
        for endpoint, rollout_id in ended:
            self._ended(endpoint, rollout_id)
        return dict(self._failed)

    def _route(self, endpoint: str) -> tuple[list[_Variant], _Variant | None]:
        with self._lock:
            variants = self._variants.get(endpoint)
            if variants is None:
                if not self._config_path(endpoint).exists():
                    raise NotFoundError(f"endpoint {endpoint!r} is not deployed")
                self._load_configs()
                variants = self._variants.get(endpoint)
                if variants is None:
                    raise NotFoundError(f"endpoint {endpoint!r} is not deployed")
            if endpoint in self._failed:
                raise EndpointNotReadyError(self._failed[endpoint])
            live = [v for v in variants if not v.shadow and v.weight > 0]
            shadow = next((v for v in variants if v.shadow), None)
            return live, shadow

    def _pick(self, live: list[_Variant]) -> _Variant:
        if len(live) == 1:
            return live[0]
        total = sum(v.weight for v in live)
        with self._lock:
            x = self._random.random() * total
        for variant in live:
            x -= variant.weight
            if x < 0:
                return variant
        return live[-1]

    def invoke(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        return self.invoke_variant(endpoint, body, content_type)[0]

    def invoke_variant(
        self, endpoint: str, body: bytes, content_type: str, inference_id: str | None = None
    ) -> tuple[bytes, str | None]:
        live, shadow = self._route(endpoint)
        if not live:
            raise EndpointNotReadyError(f"endpoint {endpoint!r} has no variant taking traffic")
        variant = self._pick(live)
        name = variant.deployment.variant
        url = self._ensure(variant.deployment)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if inference_id:
            headers["X-Inference-Id"] = inference_id
        started = time.monotonic()
        try:
            status, answer = self._post(url, body, headers)
        except OSError as exc:
            self._record(endpoint, name, started, 599)
            raise EndpointNotReadyError(f"the model server did not answer: {exc}") from None
        self._record(endpoint, name, started, status)
        if shadow is not None:
            self._enqueue_shadow(endpoint, shadow, body, content_type, inference_id, answer)
        if status < 300:
            return answer, name
        message = _message(answer)
        if status < 500:
            raise ModelInputError(message)
        raise ModelFailedError(message)

    def _ensure(self, deployment: Deployment) -> str:
        """The URL of the deployment's server, started now if this process has none yet
        (a runtime over a data dir whose stack did not ``warm`` it)."""
        if self.servers.status(deployment.endpoint, deployment.variant) is None:
            with self._deploy_lock:
                if self.servers.status(deployment.endpoint, deployment.variant) is None:
                    try:
                        self._start(deployment)
                    except EndpointNotReadyError as exc:
                        self._failed[deployment.endpoint] = str(exc)
                        raise
        return self._url(deployment.endpoint, deployment.variant)

    def _url(self, endpoint: str, variant: str) -> str:
        status = self.servers.status(endpoint, variant)
        if status is None or not status.url:
            raise EndpointNotReadyError(f"endpoint {endpoint!r} has no server for {variant}")
        if status.status == "failed":
            raise EndpointNotReadyError(
                f"the model server of {endpoint}/{variant} failed: {status.last_error}"
            )
        return status.url

    def _record(self, endpoint: str, variant: str, started: float, status: int) -> None:
        now = time.monotonic()
        stats = self._stats.get((endpoint, variant))
        if stats is None:
            stats = self._stats.setdefault((endpoint, variant), _Stats())
        stats.outcomes.append((now, status, (now - started) * 1000.0))

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST to ``url``/invocations over this thread's kept-alive connection; a stale
        connection (closed by the server or a restart) is replaced once."""
        connections: dict[str, http.client.HTTPConnection] | None = getattr(
            self._pool, "connections", None
        )
        if connections is None:
            connections = self._pool.connections = {}
        for attempt in (1, 2):
            conn = connections.get(url)
            fresh = conn is None
            if conn is None:
                parts = urlsplit(url)
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
                connections[url] = conn
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    connections.pop(url, None)
                return response.status, data
            except (http.client.HTTPException, OSError):
                conn.close()
                connections.pop(url, None)
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def status(self, endpoint: str) -> str:
        with self._lock:
            variants = self._variants.get(endpoint)
            if variants is None and not self._config_path(endpoint).exists():
                return "NotFound"
            if endpoint in self._failed:
                return "Failed"
            run = self._rollouts.get(endpoint)
            if run is not None and run.status not in TERMINAL_ROLLOUTS:
                return "Updating"
        states = [
            s.status
            for v in variants or []
            if (s := self.servers.status(endpoint, v.deployment.variant)) is not None
        ]
        if "failed" in states:
            return "Failed"
        if any(s in ("starting", "restarting") for s in states):
            return "Updating"
        return "InService"

    def failure_reason(self, endpoint: str) -> str | None:
        if endpoint in self._failed:
            return self._failed[endpoint]
        for variant in self._variants.get(endpoint, []):
            s = self.servers.status(endpoint, variant.deployment.variant)
            if s is not None and s.status == "failed":
                return f"the model server of {variant.deployment.variant} failed: {s.last_error}"
        return None

    def describe(self, endpoint: str) -> dict[str, Any]:
        """URL, runtime, restarts and variants (``GET /endpoints/{name}``)."""
        with self._lock:
            variants = list(self._variants.get(endpoint, []))
            shadow = self._shadow.get(endpoint)
        out: list[dict[str, Any]] = []
        for v in variants:
            s = self.servers.status(endpoint, v.deployment.variant)
            info = self._info(s.url) if s is not None and s.status == "ready" else {}
            out.append(
                {
                    "name": v.deployment.variant,
                    "model_version": v.deployment.version,
                    "weight": v.weight,
                    "shadow": v.shadow,
                    "url": s.url if s else None,
                    "status": s.status if s else "stopped",
                    "pid": s.pid if s else None,
                    "runtime": info.get("runtime") or (s.runtime if s else None),
                    "runtime_reason": info.get("runtime_reason"),
                    "restarts": s.restarts if s else 0,
                    "last_error": s.last_error if s else None,
                }
            )
        live = [v for v in out if not v["shadow"]]
        primary = max(live, key=lambda v: v["weight"]) if live else None
        result: dict[str, Any] = {
            "url": primary["url"] if primary else None,
            "runtime": primary["runtime"] if primary else None,
            "runtime_reason": primary["runtime_reason"] if primary else None,
            "restarts": sum(v["restarts"] for v in out),
            "last_error": next((v["last_error"] for v in out if v["last_error"]), None),
            "variants": out,
        }
        if shadow is not None:
            result["shadow"] = {
                "sent": shadow.sent, "answered": shadow.answered, "errors": shadow.errors,
                "agreed": shadow.agreed, "dropped": shadow.dropped,
                "recent": list(shadow.recent),
            }  # fmt: skip
        return result

    def _info(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=2)
        try:
            conn.request("GET", "/info")
            response = conn.getresponse()
            return dict(json.loads(response.read())) if response.status == 200 else {}
        except (OSError, ValueError, http.client.HTTPException):
            return {}
        finally:
            conn.close()

    def server_urls(self) -> dict[str, str]:
        """``{"endpoint/variant": url}`` of every running server (the monitoring loop pulls
        each one's ``GET /metrics``)."""
        return {
            f"{s.endpoint}/{s.variant}": s.url
            for s in self.servers.statuses()
            if s.url and s.status != "stopped"
        }

    def delete(self, endpoint: str) -> None:
        with self._deploy_lock:
            with self._lock:
                self._variants.pop(endpoint, None)
                self._rollouts.pop(endpoint, None)
                self._failed.pop(endpoint, None)
                self._shadow.pop(endpoint, None)
                for key in [k for k in self._stats if k[0] == endpoint]:
                    self._stats.pop(key, None)
                self._config_path(endpoint).unlink(missing_ok=True)
            self.servers.stop(endpoint)
            for key in [k for k in self._served_spec if k[0] == endpoint]:
                self._served_spec.pop(key, None)

    def close(self) -> None:
        """Stop the driver threads and (if this runtime owns them) every server."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._shadow_queue.put_nowait(("", "", "", b"", "", b""))
        for thread in self._threads:
            thread.join(timeout=5)
        if self._own_servers:
            self.servers.close()

    # --- guarded deployments -------------------------------------------------------------

    def start_rollout(self, rollout: Rollout) -> None:
        """Start ``rollout.new`` as a variant beside the current one and hand the traffic
        moves to the driver thread. Returns once the new server is up (or raises)."""
        endpoint = rollout.new.endpoint
        with self._deploy_lock:
            with self._lock:
                run = self._rollouts.get(endpoint)
                if run is not None and run.status not in TERMINAL_ROLLOUTS:
                    raise EndpointNotReadyError(
                        f"a deployment ({run.rollout.id}) is in progress on {endpoint!r}"
                    )
                if rollout.new.variant == rollout.current.variant:
                    raise EndpointNotReadyError(
                        f"{endpoint!r} already serves v{rollout.new.version}"
                    )
                run = _RolloutRun(rollout)
                self._rollouts[endpoint] = run
                self._save(endpoint)
            try:
                self._start(rollout.new)
            except EndpointNotReadyError as exc:
                with self._lock:
                    run.status, run.reason = "ROLLED_BACK", str(exc)
                    self._save(endpoint)
                raise
            with self._lock:
                current = [
                    v
                    for v in self._variants.get(endpoint, [])
                    if v.deployment.variant == rollout.current.variant
                ] or [_Variant(rollout.current, 100.0)]
                first = 0.0 if rollout.shadow else _first_share(rollout)
                self._variants[endpoint] = [
                    _Variant(current[0].deployment, 100.0 - first),
                    _Variant(rollout.new, first, shadow=rollout.shadow),
                ]
                if rollout.shadow:
                    self._shadow[endpoint] = _Shadow()
                run.status, run.new_percent = "BAKING", first
                self._begin_phase(run)
                self._save(endpoint)

    def rollout_state(
        self, endpoint: str, rollout_id: str, new: Deployment | None = None
    ) -> RolloutState | None:
        with self._lock:
            run = self._rollouts.get(endpoint)
            if run is None or run.rollout.id != rollout_id:
                return None
            if run.status == "BAKING":
                run.observed = self._observe(run)
            return run.state()

    def abort_rollout(self, endpoint: str, rollout_id: str, reason: str) -> bool:
        """Roll back a rollout in flight now (e.g. an alarm's ``rollback`` action); False if
        it is not in flight."""
        with self._lock:
            run = self._rollouts.get(endpoint)
            if run is None or run.rollout.id != rollout_id or run.status in TERMINAL_ROLLOUTS:
                return False
            self._roll_back(endpoint, run, reason)
        self._stop_variant(endpoint, run.rollout.new.variant)
        self._ended(endpoint, rollout_id)
        return True

    def _roll_back(self, endpoint: str, run: _RolloutRun, reason: str) -> None:
        run.status, run.reason, run.new_percent = "ROLLED_BACK", reason, 0.0
        self._variants[endpoint] = [_Variant(run.rollout.current, 100.0)]
        self._save(endpoint)

    def _begin_phase(self, run: _RolloutRun) -> None:
        run.phase_started = time.monotonic()
        run.phase_wall = time.time()

    def _observe(self, run: _RolloutRun) -> dict[str, Any]:
        key = (run.rollout.new.endpoint, run.rollout.new.variant)
        if run.rollout.shadow:
            key = (run.rollout.new.endpoint, "shadow:" + run.rollout.new.variant)
        stats = self._stats.get(key) or _Stats()
        return {**stats.since(run.phase_started), "new_percent": run.new_percent}

    def _drive(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                active = [(e, r) for e, r in self._rollouts.items() if r.status == "BAKING"]
            for endpoint, run in active:
                try:
                    self._advance(endpoint, run)
                except Exception:  # keep driving the others
                    log.exception("rollout %s on %s failed to advance", run.rollout.id, endpoint)

    def _advance(self, endpoint: str, run: _RolloutRun) -> None:
        rollout = run.rollout
        with self._lock:
            if run.status != "BAKING":
                return
            observed = self._observe(run)
            run.observed = observed
            breach = _breach(rollout, observed)
            elapsed = time.monotonic() - run.phase_started
            if breach is None and elapsed < rollout.bake_seconds:
                return
            if breach is not None:
                self._roll_back(endpoint, run, breach)
                stop = rollout.new.variant
            elif rollout.shadow or run.new_percent >= 100.0:
                run.status = "COMPLETED"
                if rollout.shadow:
                    self._variants[endpoint] = [_Variant(rollout.current, 100.0)]
                    stop = rollout.new.variant
                else:
                    self._variants[endpoint] = [_Variant(rollout.new, 100.0)]
                    stop = rollout.current.variant
            else:
                share = _next_share(rollout, run.new_percent)
                run.new_percent = share
                self._variants[endpoint] = [
                    _Variant(rollout.current, 100.0 - share),
                    _Variant(rollout.new, share),
                ]
                self._begin_phase(run)
                self._save(endpoint)
                return
            self._save(endpoint)
        self._stop_variant(endpoint, stop)
        self._ended(endpoint, rollout.id)

    def _ended(self, endpoint: str, rollout_id: str) -> None:
        if self.on_rollout_end is not None:
            try:
                self.on_rollout_end(endpoint, rollout_id)
            except Exception:
                log.exception("recording the end of rollout %s failed", rollout_id)

    # --- shadow traffic ------------------------------------------------------------------

    def _enqueue_shadow(
        self,
        endpoint: str,
        shadow: _Variant,
        body: bytes,
        content_type: str,
        inference_id: str | None,
        answer: bytes,
    ) -> None:
        stats = self._shadow.setdefault(endpoint, _Shadow())
        try:
            self._shadow_queue.put_nowait(
                (
                    endpoint,
                    shadow.deployment.variant,
                    content_type,
                    body,
                    inference_id or "",
                    answer,
                )
            )
            stats.sent += 1
        except queue.Full:
            stats.dropped += 1

    def _shadow_loop(self) -> None:
        while not self._stop.is_set():
            endpoint, variant, content_type, body, inference_id, primary = self._shadow_queue.get()
            if not endpoint:
                continue
            stats = self._shadow.setdefault(endpoint, _Shadow())
            started = time.monotonic()
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            if inference_id:
                headers["X-Inference-Id"] = inference_id
            try:
                status, answer = self._post(self._url(endpoint, variant), body, headers)
            except (OSError, EndpointNotReadyError) as exc:
                status, answer = 599, str(exc).encode()
            self._record(endpoint, "shadow:" + variant, started, status)
            stats.answered += 1
            if status >= 500:
                stats.errors += 1
            agreed = status < 300 and _predictions(answer) == _predictions(primary)
            stats.agreed += int(agreed)
            stats.recent.append(
                {
                    "inference_id": inference_id or None,
                    "status": status,
                    "agreed": agreed,
                    "latency_ms": round((time.monotonic() - started) * 1000, 3),
                }
            )


def _first_share(rollout: Rollout) -> float:
    if rollout.strategy == "all_at_once":
        return 100.0
    return min(100.0, max(0.0, rollout.percent))


def _next_share(rollout: Rollout, share: float) -> float:
    if rollout.strategy == "linear":
        return min(100.0, share + rollout.percent)
    return 100.0  # a canary that baked cleanly takes the rest at once (as SageMaker's)


def _breach(rollout: Rollout, observed: dict[str, Any]) -> str | None:
    n = int(observed.get("requests") or 0)
    if n < max(1, rollout.min_requests):
        return None
    rate = observed.get("error_rate")
    if rollout.error_rate is not None and rate is not None and rate > rollout.error_rate:
        return (
            f"5xx error rate {rate:.3f} over {n} requests exceeded {rollout.error_rate:g} "
            f"at {observed.get('new_percent'):g}% traffic"
        )
    p99 = observed.get("p99_ms")
    if rollout.p99_ms is not None and p99 is not None and p99 > rollout.p99_ms:
        return f"p99 latency {p99:.1f} ms over {n} requests exceeded {rollout.p99_ms:g} ms"
    return None


def _message(answer: bytes) -> str:
    try:
        decoded = json.loads(answer)
    except ValueError:
        return answer.decode("utf-8", "replace")[:500]
    if isinstance(decoded, dict) and "Message" in decoded:
        return str(decoded["Message"])
    return str(decoded)[:500]


def _predictions(answer: bytes) -> Any:
    try:
        return json.loads(answer).get("predictions")
    except (ValueError, AttributeError):
        return None
