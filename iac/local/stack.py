"""The embedded local stack: everything `make run` and the tests need, with no Docker and no
AWS account.

- a moto server on loopback with Step Functions execution on (it runs the real ASL), on a
  stable port (``MLPIPE_AWS_PORT``, 4510) that the AWS CLI can be pointed at;
- the state machine and one Lambda function per step, provisioned from the same
  definitions used on AWS (``stepfunctions/``, the step registry);
- the Lambda plug, so those functions run the project's handlers in this process;
- the local ports (files, SQLite, job processes, model serving) over a data dir that one
  stack owns at a time (a lock file with the owner's pid).

moto keeps its state in memory; everything a user must keep lives in the data dir, so a
restart loses nothing. Execution histories are saved into the data dir as runs progress.
Stopping the stack ends runs in flight as ``Interrupted`` and stops their jobs; a stack that
was killed has its leftovers marked the same way on the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
from moto.server import ThreadedMotoServer

import stepfunctions
from chalicelib import aws, runs, runtime, tables, workflow
from chalicelib.adapters.stepfunctions import StepFunctionsOrchestrator
from chalicelib.monitoring import invocations
from chalicelib.ports import TERMINAL_EVENTS, ExecutionNotFoundError, ObjectStore
from chalicelib.runtime import Ports
from chalicelib.settings import Settings
from iac.local import lambda_plug
from iac.local.endpoints import LocalEndpointRuntime
from iac.local.files import FileObjectStore
from iac.local.jobs import JOBS_SOURCE_DIR, LocalJobRunner, job_python
from iac.local.metrics_store import SqliteMetricsStore
from iac.local.monitoring_loop import RESOURCE_METRICS, MonitoringLoop
from iac.local.sqlite import SqliteMetadata

log = logging.getLogger("mlpipe.stack")

ACCOUNT = "123456789012"
REGION = "us-east-1"
STATE_MACHINE_NAME = "mlpipe-pipeline"
FUNCTION_PREFIX = "mlpipe-local-"
ROLE_NAME = "mlpipe-local-states"
LOCK_FILE = ".mlpipe.lock"


class DataDirInUseError(RuntimeError):
    """Another stack owns this data dir."""


def code_version() -> str:
    """The job scripts' content hash: what each model version records as its code version
    (on AWS the deploy script sets the git commit instead)."""
    digest = hashlib.sha256()
    for path in sorted(JOBS_SOURCE_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(JOBS_SOURCE_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return "local-" + digest.hexdigest()[:12]


def _lock(data_dir: Path) -> IO[str]:
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUseError(
            f"the data dir {data_dir} is in use by a running mlpipe (pid {owner}); stop it, "
            "or start this one with another MLPIPE_DATA_DIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class HistoryKeeper:
    """Saves each execution's history into the object store as it grows (moto keeps it
    only in memory), so histories survive a stop, a restart and even a kill -9."""

    def __init__(self, orchestrator: StepFunctionsOrchestrator, store: ObjectStore) -> None:
        self.orchestrator = orchestrator
        self.store = store
        self._watched: dict[str, tuple[str, int]] = {}  # run id -> (execution arn, events saved)
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="history-keeper", daemon=True)
        self._thread.start()

    def watch(self, run_id: str, arn: str) -> None:
        with self._lock:
            self._watched.setdefault(run_id, (arn, 0))

    def save(self, run_id: str) -> bool:
        """Save the run's history now; True once it has ended (it is then unwatched)."""
        # One save at a time: the loop and a caller (a start, a cancel) must not race, or a
        # history read before the run ended could overwrite the one read after.
        with self._saving:
            return self._save(run_id)

    def _save(self, run_id: str) -> bool:
        with self._lock:
            arn, saved = self._watched.get(run_id, ("", 0))
        if not arn:
            return True
        events: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                page = self.orchestrator.history(arn, token, 1000)
                events.extend(page.events)
                token = page.next_token
                if not token:
                    break
        except ExecutionNotFoundError:
            with self._lock:
                self._watched.pop(run_id, None)
            return True
        ended = bool(events) and events[-1]["type"] in TERMINAL_EVENTS
        if len(events) != saved:
            self.store.put_bytes(runs.history_key(run_id), json.dumps(events).encode())
        with self._lock:
            if ended:
                self._watched.pop(run_id, None)
            elif run_id in self._watched:
                self._watched[run_id] = (arn, len(events))
        return ended

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                watched = list(self._watched)
            for run_id in watched:
                try:
                    self.save(run_id)
                except Exception:  # keep watching the others
                    log.warning("could not save the history of run %s", run_id, exc_info=True)

    def flush(self) -> None:
        with self._lock:
            watched = list(self._watched)
        for run_id in watched:
            with contextlib.suppress(Exception):
                self.save(run_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class FastPathWatcher:
    """Applies fast paths as their jobs finish (``chalicelib.fast_path.settle``): the
    endpoints serving a version restart on ONNX once it is built and agrees."""

    def __init__(self, ports: Ports, interval: float = 1.0) -> None:
        self.ports = ports
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="fast-paths", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        from chalicelib import fast_path

        while not self._stop.wait(interval):
            try:
                fast_path.settle(self.ports)
            except Exception:  # try again next round
                log.warning("applying fast paths failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class LocalOrchestrator(StepFunctionsOrchestrator):
    """Step Functions on the embedded moto server, with each execution's history kept."""

    def __init__(self, state_machine_arn: str, sfn: Any, store: ObjectStore) -> None:
        super().__init__(state_machine_arn, sfn)
        self.keeper = HistoryKeeper(self, store)

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        arn = super().start(name, execution_input)
        self.keeper.watch(name, arn)
        # Its first events are kept before the caller hears of the run: a run whose process
        # dies right away still has a history to show (GET /runs/{id}/events).
        self._save(name)
        return arn

    def stop(self, ref: str, cause: str) -> None:
        # moto's interpreter fails a StopExecution that arrives before its worker has begun
        # the execution (an AttributeError, a 500) and the execution then never records its
        # end: wait (briefly) for the first state to be entered.
        self._until(ref, lambda events: len(events) > 1, seconds=10.0)  # a loaded machine
        super().stop(ref, cause)
        # Kept now, and again by the keeper once the interpreter records the end (it does
        # so when the step in flight returns).
        self._save(ref.rsplit(":", 1)[-1])

    def _until(self, ref: str, done: Any, seconds: float = 2.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if done(self.history(ref, None, 1000).events):
                    return
            except ExecutionNotFoundError:
                raise
            except Exception:  # noqa: S110 - best effort; the stop itself reports errors
                pass
            time.sleep(0.02)

    def _save(self, run_id: str) -> None:
        try:
            self.keeper.save(run_id)
        except Exception:  # the keeper's loop tries again
            log.warning("could not save the history of run %s", run_id, exc_info=True)


@dataclass
class LocalStack:
    data_dir: Path
    server: ThreadedMotoServer
    endpoint_url: str
    state_machine_arn: str
    ports: Ports
    _lock_handle: IO[str] | None = field(default=None, repr=False)
    _stopped: bool = False
    monitoring: MonitoringLoop | None = None
    fast_paths: FastPathWatcher | None = None

    def stop(self) -> None:
        """Runs in flight end Interrupted (their histories kept), jobs are stopped, the
        moto server stops and the data dir is released. Calling it twice is harmless."""
        if self._stopped:
            return
        self._stopped = True
        orchestrator = self.ports.orchestrator
        assert isinstance(orchestrator, LocalOrchestrator)
        assert isinstance(self.ports.jobs, LocalJobRunner)
        if self.fast_paths is not None:
            self.fast_paths.close()
        orchestrator.keeper.flush()
        interrupted = _interrupt_runs(self.ports, "the local stack stopped while this run ran")
        stopped_jobs = self.ports.jobs.stop_all()
        for rec in interrupted:
            with contextlib.suppress(Exception):
                orchestrator.stop(rec, "the local stack stopped")
        orchestrator.keeper.flush()
        orchestrator.keeper.close()
        if interrupted or stopped_jobs:
            log.info("stopped: %d run(s) interrupted, %d job(s) stopped",
                     len(interrupted), stopped_jobs)  # fmt: skip
        if self.monitoring is not None:
            self.monitoring.stop()
        invocations.reset()  # writes the last invocation metrics and captures
        runtime.install(None)
        lambda_plug.uninstall()
        self.server.stop()
        self.ports.jobs.close()
        assert isinstance(self.ports.endpoints, LocalEndpointRuntime)
        self.ports.endpoints.close()  # the model servers stop with the stack
        if self._lock_handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()


def _interrupt_runs(ports: Ports, message: str) -> list[str]:
    """End every RUNNING run as FAILED (Interrupted); returns their execution ARNs."""
    arns = []
    for rec in ports.metadata.query(tables.RUNS):
        if rec.item["status"] == "RUNNING":
            runs.end(ports, rec.item["run_id"], "FAILED",
                     {"step": runs.interrupted_step(rec.item), "type": "Interrupted",
                      "message": message})  # fmt: skip
            if rec.item.get("execution_arn"):
                arns.append(rec.item["execution_arn"])
    return arns


def _function_zip() -> bytes:
    # moto stores the code but never runs it (the plug does); AWS gets the real package
    # from `chalice package`.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "# code runs in-process via iac/local/lambda_plug.py\n")
    return buf.getvalue()


def _moto_client(endpoint: str, service: str) -> Any:
    """A client of the embedded server: explicit endpoint and dummy credentials, so nothing
    in this process can reach a real AWS account through it."""
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's dummy credentials
        config=aws.config(),
    )


def _post_json(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(  # noqa: S310 - loopback URL we just bound
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        resp.read()


def start(data_dir: Path, port: int | None = None, **overrides: Any) -> LocalStack:
    """Start (or restart) the stack over ``data_dir``. Returns once it can take runs.

    ``port`` is the embedded AWS endpoint's (default ``MLPIPE_AWS_PORT``; 0 picks a free
    one). ``overrides`` are settings (e.g. ``max_concurrent_runs=2``).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_handle = _lock(data_dir)
    try:
        return _start(data_dir, port, lock_handle, overrides)
    except BaseException:
        lock_handle.close()
        raise


def _start(
    data_dir: Path, port: int | None, lock_handle: IO[str], overrides: dict[str, Any]
) -> LocalStack:
    # moto's server logs every internal call (each Lambda invoke, ...): keep consoles readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The interpreter logs every Fail state at ERROR with its whole AST; a failed run is a
    # normal outcome whose reason is on the run record (GET /runs/{id}).
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    base = Settings()
    bound_port = base.aws_port if port is None else port
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=bound_port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    endpoint = f"http://{host}:{bound}"
    # moto's interpreter calls Lambda through the server at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound)
    state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE_NAME}"
    settings = Settings(
        **{
            "profile": "local",
            "data_dir": data_dir,
            "state_machine_arn": state_machine_arn,
            "region": REGION,
            "poll_seconds": 0,
            "code_version": code_version(),
            "aws_endpoint_url": endpoint,
            **overrides,
        }
    )
    (data_dir / "files").mkdir(exist_ok=True)
    _post_json(f"{endpoint}/moto-api/reset", {})
    _post_json(f"{endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
    store = FileObjectStore(settings.objects_dir)
    metadata = SqliteMetadata(settings.metadata_path)
    wired = Ports(
        settings=settings,
        store=store,
        metadata=metadata,
        jobs=LocalJobRunner(
            settings.jobs_dir,
            store,
            long_poll_seconds=settings.job_long_poll_seconds,
            python=settings.job_python,
        ),
        endpoints=local_endpoints(settings, data_dir / "endpoints", store, metadata),
        orchestrator=LocalOrchestrator(
            state_machine_arn, _moto_client(endpoint, "stepfunctions"), store
        ),
        metrics=SqliteMetricsStore(settings.metrics_path),
    )
    invocations.reset()  # a monitor left by an earlier stack in this process has its settings
    runtime.install(wired)
    _install_handlers()
    _provision(endpoint, state_machine_arn)
    _recover(wired)
    loop = _monitoring(wired)
    log.info("local stack: AWS endpoint %s, data in %s", endpoint, data_dir)
    return LocalStack(
        data_dir,
        server,
        endpoint,
        state_machine_arn,
        wired,
        lock_handle,
        monitoring=loop,
        fast_paths=FastPathWatcher(wired),
    )


def _monitoring(wired: Ports) -> MonitoringLoop:
    """What CloudWatch and EventBridge do on AWS: metrics pulled from model servers, alarms
    evaluated, drift checked on schedule (iac/local/monitoring_loop.py)."""

    def servers() -> dict[str, str]:  # model servers, when the runtime runs any
        listing = getattr(wired.endpoints, "server_urls", None)
        return dict(listing()) if callable(listing) else {}

    def endpoints() -> list[str]:
        return [r.item["name"] for r in wired.metadata.query(tables.ENDPOINTS)]

    # The API measures every invocation (count, errors, latency) and captures it; from the
    # model servers only what the API cannot see: their processes' CPU and memory.
    loop = MonitoringLoop(
        wired, wired.metrics, servers, endpoints, settings=wired.settings,
        server_metrics=RESOURCE_METRICS,
    )  # fmt: skip
    loop.start()
    return loop


def local_endpoints(
    settings: Settings, root: Path, store: ObjectStore, metadata: Any
) -> LocalEndpointRuntime:
    """Model server processes in the job environment, capturing requests into the object
    store (``datacapture/``) at each endpoint's sampling percentage; a guarded deployment
    that ends is recorded by the domain (``deployments.finish``)."""
    from chalicelib import deployments
    from chalicelib.monitoring import service as monitoring

    def capture_percent(endpoint: str) -> float:
        config = monitoring.get_capture(metadata, endpoint)
        return float(config["sampling_percent"]) if config.get("enabled", True) else 0.0

    endpoints = LocalEndpointRuntime(
        root,
        store,
        python=job_python(settings.job_python),
        # Behind the API, requests are captured once, by the API (chalicelib.monitoring);
        # a server's own capture is for serving without the API (modelserver.py serve).
        capture_root=None,
        capture_percent=capture_percent,
    )

    def finish(endpoint: str, rollout_id: str) -> None:
        deployments.finish(runtime.ports(), endpoint, rollout_id)

    endpoints.on_rollout_end = finish
    return endpoints


def _install_handlers() -> None:
    from chalicelib import steps

    lambda_plug.install({FUNCTION_PREFIX + f: steps.HANDLERS[f] for f in workflow.FUNCTIONS})


def _provision(endpoint: str, state_machine_arn: str) -> None:
    iam = _moto_client(endpoint, "iam")
    role = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    lam = _moto_client(endpoint, "lambda")
    code = _function_zip()
    arns: dict[str, str] = {}
    for placeholder, name in stepfunctions.FUNCTIONS.items():
        arns[placeholder] = lam.create_function(
            FunctionName=FUNCTION_PREFIX + name,
            Runtime="python3.11",
            Role=role,
            Handler=f"app.{name}",
            Code={"ZipFile": code},
            Timeout=900,
            MemorySize=3008,
        )["FunctionArn"]
    created = _moto_client(endpoint, "stepfunctions").create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=stepfunctions.render(arns),
        roleArn=role,
        type="STANDARD",
    )["stateMachineArn"]
    assert created == state_machine_arn, created


def _recover(wired: Ports) -> None:
    """Runs and jobs a previous process left in flight can never finish."""
    assert isinstance(wired.jobs, LocalJobRunner)
    assert isinstance(wired.endpoints, LocalEndpointRuntime)
    interrupted = _interrupt_runs(wired, "the local stack stopped while this run ran")
    # The data dir has one owner (the lock file): a lease still held was held by a previous
    # process of it, which is gone; it would otherwise block its endpoint for its whole ttl.
    for lease in wired.metadata.query(tables.LEASES):
        wired.metadata.delete(tables.LEASES, lease.sk)
    jobs = wired.jobs.mark_interrupted()
    if interrupted or jobs:
        log.warning("marked %d interrupted run(s) and %d job(s)", len(interrupted), jobs)
    failed = wired.endpoints.warm()
    for name, reason in failed.items():
        log.error("endpoint %s cannot serve: %s", name, reason)
