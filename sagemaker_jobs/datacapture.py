"""Data capture for the local model server: standard library only (ships in ``code/``).

On AWS, SageMaker captures requests itself (``DataCaptureConfig`` on the endpoint config)
into the same format and layout (``mlcontract.capture``); this writer is the local stand-in.

The model server asks ``writer.sampled()`` per request (one ``random()`` call) and, for a
sampled request, hands over the raw bodies with ``writer.capture(...)`` after answering:
an ``append`` to a deque, no lock and no serialization on the hot path. A daemon thread
writes the queued records every ``interval`` seconds as a new JSONL file per (variant, UTC
hour) under ``root/<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/``, each file written to a
temporary name and renamed, so readers never see half a file. The queue is bounded
(``max_pending``): when the disk cannot keep up, records are dropped and counted
(``dropped``), never the request.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mlcontract import capture  # noqa: E402

_Pending = tuple[str, float, str, bytes, str, bytes]


class CaptureWriter:
    def __init__(
        self,
        root: Path,
        endpoint: str,
        *,
        sampling_percent: float = 100.0,
        prefix: str = capture.DEFAULT_PREFIX,
        interval: float = 10.0,
        max_pending: int = 100_000,
        seed: int | None = None,
    ) -> None:
        if not 0 <= sampling_percent <= 100:
            raise ValueError("sampling_percent must be within 0..100")
        self.root = Path(root)
        self.endpoint = endpoint
        self.prefix = prefix
        self.sampling_percent = float(sampling_percent)
        self.interval = interval
        # Sampling, not security: a seeded generator makes tests repeatable.
        self._random = random.Random(seed).random if seed is not None else random.random  # noqa: S311
        self._pending: deque[_Pending] = deque()
        self._max_pending = max_pending
        self.dropped = 0
        self.written = 0
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def sampled(self) -> bool:
        pct = self.sampling_percent
        return pct >= 100 or (pct > 0 and self._random() * 100.0 < pct)

    def capture(
        self,
        inference_id: str,
        variant: str,
        input_body: bytes,
        input_content_type: str,
        output_body: bytes,
        when: float | None = None,
    ) -> None:
        """Queue one answered request (call only when ``sampled()`` said so)."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append(
            (
                inference_id,
                when if when is not None else time.time(),
                variant,
                bytes(input_body),
                input_content_type,
                bytes(output_body),
            )
        )

    def flush(self) -> list[Path]:
        """Write everything queued; returns the files written."""
        with self._write_lock:
            items: list[_Pending] = []
            while True:
                try:
                    items.append(self._pending.popleft())
                except IndexError:
                    break
            groups: dict[tuple[str, str], list[str]] = {}
            for inference_id, ts, variant, body, ctype, out in items:
                when = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
                line = json.dumps(
                    capture.record(inference_id, when, body, ctype, out),
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
                groups.setdefault(
                    (variant, capture.hour_path(self.endpoint, variant, when)), []
                ).append(line)
            written = []
            for (_variant, hour), lines in sorted(groups.items()):
                self._seq += 1
                now_ms = int(_dt.datetime.now(_dt.timezone.utc).timestamp() * 1000)
                name = f"{now_ms}-{os.getpid()}-{self._seq:06d}.jsonl"
                folder = self.root / self.prefix / hour
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
                os.replace(tmp, folder / name)
                written.append(folder / name)
                self.written += len(lines)
            return written

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="datacapture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError as exc:  # a full disk must not take the server down
                print(f"data capture flush failed: {exc}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
