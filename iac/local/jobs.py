"""The job runner on this machine: the job scripts as local processes under the SageMaker
container contract, so ``sagemaker_jobs/*.py`` never know where they run:

- training: hyperparameters arrive as ``--name value``; channel ``c`` is a directory in
  ``SM_CHANNEL_C``; the model goes to ``SM_MODEL_DIR`` and is tarred to ``model.tar.gz``;
  a failure reason is written to ``$SM_OUTPUT_DIR/failure``.
- processing: input ``n`` is a directory passed as ``--n-dir``; outputs go to ``--output-dir``.

As on SageMaker: ``start`` is idempotent per job name, ``stop`` ends a job as ``Stopped``, and
a job that runs past its ``max_runtime_seconds`` is stopped with ``MaxRuntimeExceeded``. Every
job process dies with this process (see ``launcher``). ``describe`` long-polls: it blocks up to
``long_poll_seconds`` for the job to end, so the state machine's check loop neither spins nor
bloats the execution history (its Wait is 0 s locally).
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from chalicelib.errors import NotFoundError
from chalicelib.ports import JobKind, JobRunner, JobSpec, JobStatus, ObjectStore
from iac.local.launcher import Launcher, default_launcher

JOBS_SOURCE_DIR = Path(__file__).resolve().parents[2] / "sagemaker_jobs"
# The job environment `make jobs-venv` builds: the SageMaker image's Python and library
# versions (sagemaker_jobs/mlcontract/image.py).
JOBS_VENV_PYTHON = JOBS_SOURCE_DIR.parent / ".venv-jobs" / "bin" / "python"


def job_python(configured: str | None = None) -> str:
    """The interpreter job scripts run with: ``MLPIPE_JOB_PYTHON`` when set, else the job
    environment when it exists, else this interpreter (same scikit-learn, other pandas)."""
    if configured:
        return configured
    if JOBS_VENV_PYTHON.exists():
        return str(JOBS_VENV_PYTHON)
    return sys.executable


INTERRUPTED = "Interrupted: the local stack stopped while this job ran"


class LocalJobRunner:
    def __init__(
        self,
        jobs_dir: Path,
        store: ObjectStore,
        launcher: Launcher | None = None,
        long_poll_seconds: float = 5.0,
        python: str | None = None,
    ) -> None:
        self.jobs_dir = jobs_dir
        self.store = store
        self.python = job_python(python)
        self.launcher = launcher or default_launcher(python=self.python)
        self.long_poll_seconds = long_poll_seconds
        self._done: dict[str, threading.Event] = {}
        self._stopping: dict[str, str] = {}  # job name -> why it is being stopped
        self._lock = threading.Lock()

    def _status_path(self, name: str) -> Path:
        return self.jobs_dir / name / "status.json"

    def _write_status(self, status: JobStatus) -> None:
        path = self._status_path(status.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(status)))
        os.replace(tmp, path)

    def _read_status(self, name: str) -> JobStatus | None:
        try:
            return JobStatus(**json.loads(self._status_path(name).read_text()))
        except FileNotFoundError:
            return None

    def start(self, spec: JobSpec) -> None:
        with self._lock:
            if self._read_status(spec.name) is not None:
                return  # same name = the same job (a retried state): never run it twice
            workdir = self.jobs_dir / spec.name
            workdir.mkdir(parents=True, exist_ok=True)
            self._write_status(JobStatus(spec.name, "InProgress"))
            done = threading.Event()
            self._done[spec.name] = done
        thread = threading.Thread(
            target=self._run, args=(spec, workdir, done), name=f"job-{spec.name}", daemon=True
        )
        thread.start()

    def stop(self, name: str, kind: JobKind) -> None:
        """Stop a running job (its whole process group); an ended job stays as it ended."""
        with self._lock:
            if name not in self._done or self._done[name].is_set():
                return
            self._stopping.setdefault(name, "Stopped by request")
        self.launcher.kill(name)

    def stop_all(self, reason: str = INTERRUPTED) -> int:
        """Stop every running job (the stack is stopping); returns how many were running."""
        with self._lock:
            running = [n for n, done in self._done.items() if not done.is_set()]
            for name in running:
                self._stopping.setdefault(name, reason)
        for name in running:
            self.launcher.kill(name)
        for name in running:
            self._done[name].wait(10)
        return len(running)

    def _stage(self, key: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        if self.store.exists(key):
            self.store.get_file(key, dest / key.rsplit("/", 1)[-1])
            return
        prefix = key.rstrip("/") + "/"
        keys = self.store.list(prefix)
        if not keys:
            raise NotFoundError(f"job input {key!r} is empty")
        for k in keys:
            self.store.get_file(k, dest / k[len(prefix) :])

    def _run(self, spec: JobSpec, workdir: Path, done: threading.Event) -> None:
        status = JobStatus(spec.name, "Failed")
        try:
            status = self._execute(spec, workdir)
        except Exception as exc:  # the job failed; the reason is what the user sees
            status.failure_reason = f"{type(exc).__name__}: {exc}"[:1024]
        finally:
            self._write_status(status)
            done.set()

    def _timer(self, spec: JobSpec) -> threading.Timer:
        def expire() -> None:
            with self._lock:
                self._stopping.setdefault(
                    spec.name,
                    f"MaxRuntimeExceeded: the job ran longer than {spec.max_runtime_seconds} s",
                )
            self.launcher.kill(spec.name)

        timer = threading.Timer(spec.max_runtime_seconds, expire)
        timer.daemon = True
        return timer

    def _execute(self, spec: JobSpec, workdir: Path) -> JobStatus:
        output_dir = workdir / "output"
        output_dir.mkdir(exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MLPIPE_", "MOTO_"))  # jobs get no credentials
        }
        env["SM_OUTPUT_DIR"] = str(output_dir)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        script = str(JOBS_SOURCE_DIR / spec.entry_point)
        argv = [a for k, v in spec.arguments.items() for a in (f"--{k}", v)]
        if spec.kind == "training":
            model_dir = workdir / "model"
            model_dir.mkdir(exist_ok=True)
            env["SM_MODEL_DIR"] = str(model_dir)
            env["SM_OUTPUT_DATA_DIR"] = str(output_dir / "data")
            for channel, key in spec.inputs.items():
                channel_dir = workdir / "input" / "data" / channel
                self._stage(key, channel_dir)
                env[f"SM_CHANNEL_{channel.upper()}"] = str(channel_dir)
        else:
            out = workdir / "processing" / "output"
            out.mkdir(parents=True, exist_ok=True)
            for name, key in spec.inputs.items():
                target = workdir / "processing" / name
                self._stage(key, target)
                argv += [f"--{name}-dir", str(target)]
            argv += ["--output-dir", str(out)]
        timer = self._timer(spec)
        timer.start()
        try:
            # A stop that came before this point is remembered by the launcher: a job stopped
            # before its process started never starts (and ends Stopped below).
            returncode = self.launcher.run(
                spec.name, script, argv, env, workdir, workdir / "job.log"
            )
        finally:
            timer.cancel()
            self.launcher.forget(spec.name)
        with self._lock:
            stopped = self._stopping.pop(spec.name, None)
        if stopped is not None:
            return JobStatus(spec.name, "Stopped", stopped)
        if returncode != 0:
            failure = output_dir / "failure"
            reason = failure.read_text().strip() if failure.exists() else ""
            if not reason:  # killed, or crashed before it could say why: the log has the rest
                reason = f"the job exited with code {returncode} without a failure reason"
            return JobStatus(spec.name, "Failed", reason[:1024])
        if spec.kind == "training":
            archive = workdir / "model.tar.gz"
            # Level 1: models can be 100 MB of pickle; level 6 costs ~1 s more for ~20 % less.
            with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
                for item in sorted((workdir / "model").iterdir()):
                    tar.add(item, arcname=item.name)
            key = f"{spec.output_prefix.rstrip('/')}/model.tar.gz"
            self.store.put_file(key, archive)
            return JobStatus(spec.name, "Completed", outputs={"model": key})
        prefix = spec.output_prefix.rstrip("/")
        out = workdir / "processing" / "output"
        for path in sorted(out.rglob("*")):
            if path.is_file():
                self.store.put_file(f"{prefix}/{path.relative_to(out).as_posix()}", path)
        return JobStatus(spec.name, "Completed", outputs={"output": prefix})

    def describe(self, name: str, kind: JobKind) -> JobStatus:
        done = self._done.get(name)
        if done is not None and self.long_poll_seconds > 0:
            done.wait(self.long_poll_seconds)
        status = self._read_status(name)
        if status is None:
            raise NotFoundError(f"job {name!r} not found")
        if status.status == "InProgress" and done is None:
            # Started by a process that has since stopped: nothing will ever finish it.
            status = JobStatus(name, "Stopped", INTERRUPTED)
            self._write_status(status)
        return status

    def close(self) -> None:
        self.launcher.close()

    def mark_interrupted(self) -> int:
        """On start-up: jobs left InProgress by a previous process can never complete."""
        count = 0
        if not self.jobs_dir.exists():
            return 0
        for path in self.jobs_dir.glob("*/status.json"):
            status = self._read_status(path.parent.name)
            if status and status.status == "InProgress" and path.parent.name not in self._done:
                self._write_status(JobStatus(status.name, "Stopped", INTERRUPTED))
                count += 1
        return count


def wait_until_done(runner: JobRunner, name: str, kind: JobKind, timeout: float) -> JobStatus:
    """For scripts and tests: poll until the job ends or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        status = runner.describe(name, kind)
        if status.status != "InProgress" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)
