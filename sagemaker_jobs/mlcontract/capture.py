"""Data capture records in SageMaker's format and layout: standard library only.

A captured request is one JSON line, exactly what a SageMaker endpoint with
``DataCaptureConfig`` writes::

    {"captureData": {
        "endpointInput":  {"observedContentType": "application/json", "mode": "INPUT",
                           "data": "<the request body>", "encoding": "JSON"},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                           "data": "{\"predictions\": [...]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": ID, "inferenceId": ID, "inferenceTime": "2026-11-28T10:00:00Z"},
     "eventVersion": "0"}

``encoding`` is ``JSON`` or ``CSV`` (the body as text) or ``BASE64``. Our writer sets
``eventId`` and ``inferenceId`` to the inference id returned to the caller in the
``X-Inference-Id`` header; SageMaker sets ``inferenceId`` from ``InvokeEndpoint``'s
``InferenceId`` (the API passes its id there) and its own ``eventId``, so readers join on
``inferenceId`` and fall back to ``eventId``.

Files live at ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl`` (UTC hour of the
request), the layout SageMaker uses under ``DestinationS3Uri``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mlcontract import scoring

DEFAULT_PREFIX: Final = "datacapture"
INFERENCE_ID_HEADER: Final = "X-Inference-Id"


def new_inference_id() -> str:
    return os.urandom(16).hex()


def hour_path(endpoint: str, variant: str, when: _dt.datetime) -> str:
    when = when.astimezone(_dt.timezone.utc)
    return f"{endpoint}/{variant}/{when:%Y/%m/%d/%H}"


def file_key(prefix: str, endpoint: str, variant: str, when: _dt.datetime, name: str) -> str:
    return f"{prefix}/{hour_path(endpoint, variant, when)}/{name}.jsonl"


def hours(start: _dt.datetime, end: _dt.datetime) -> list[_dt.datetime]:
    """The UTC hours whose folders may hold records in ``[start, end)``."""
    hour = start.astimezone(_dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < end:
        out.append(hour)
        hour += _dt.timedelta(hours=1)
    return out


def _iso(when: _dt.datetime) -> str:
    return (
        when.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _encode(body: bytes, content_type: str) -> tuple[str, str]:
    media = scoring.media_type(content_type)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "BASE64"
    if media == scoring.JSON:
        return text, "JSON"
    if media == scoring.CSV:
        return text, "CSV"
    return base64.b64encode(body).decode("ascii"), "BASE64"


def record(
    inference_id: str,
    when: _dt.datetime,
    input_body: bytes,
    input_content_type: str,
    output_body: bytes,
    output_content_type: str = scoring.JSON,
) -> dict[str, Any]:
    in_data, in_enc = _encode(input_body, input_content_type)
    out_data, out_enc = _encode(output_body, output_content_type)
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": input_content_type,
                "mode": "INPUT",
                "data": in_data,
                "encoding": in_enc,
            },
            "endpointOutput": {
                "observedContentType": output_content_type,
                "mode": "OUTPUT",
                "data": out_data,
                "encoding": out_enc,
            },
        },
        "eventMetadata": {
            "eventId": inference_id,
            "inferenceId": inference_id,
            "inferenceTime": _iso(when),
        },
        "eventVersion": "0",
    }


@dataclass(frozen=True)
class Captured:
    inference_id: str
    time: _dt.datetime
    input_body: bytes
    input_content_type: str
    output_body: bytes


def _decode(part: dict[str, Any]) -> bytes:
    data = part.get("data", "")
    if part.get("encoding") == "BASE64":
        return base64.b64decode(data)
    return str(data).encode("utf-8")


def parse_line(line: str | bytes) -> Captured:
    doc = json.loads(line)
    meta = doc["eventMetadata"]
    data = doc["captureData"]
    when = _dt.datetime.fromisoformat(str(meta["inferenceTime"]).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return Captured(
        inference_id=str(meta.get("inferenceId") or meta["eventId"]),
        time=when.astimezone(_dt.timezone.utc),
        input_body=_decode(data["endpointInput"]),
        input_content_type=str(data["endpointInput"].get("observedContentType") or scoring.JSON),
        output_body=_decode(data.get("endpointOutput") or {"data": "{}"}),
    )


def parse_lines(text: str | bytes) -> Iterator[Captured]:
    """Every well-formed record of a JSONL file (a torn last line is skipped)."""
    for raw in (text.decode("utf-8") if isinstance(text, bytes) else text).splitlines():
        if raw.strip():
            try:
                yield parse_line(raw)
            except (ValueError, KeyError, TypeError):
                continue


@dataclass
class CapturedRows:
    """Captured requests flattened to rows, column-oriented (typed like the model sees them:
    numbers as floats with NaN for missing, text as str/None)."""

    columns: dict[str, list[Any]]
    predictions: list[Any]
    inference_ids: list[str]
    row_in_request: list[int]
    times: list[_dt.datetime]
    skipped: int = 0

    @property
    def n_rows(self) -> int:
        return len(self.predictions)


def to_rows(
    records: Iterable[Captured],
    signature: scoring.Signature | Sequence[Mapping[str, str]],
    start: _dt.datetime | None = None,
    end: _dt.datetime | None = None,
) -> CapturedRows:
    """Requests in ``[start, end)`` parsed against the model signature, one row per input
    row, each with its prediction. Records that do not parse are counted in ``skipped``."""
    sig = scoring.Signature.of(signature)
    out = CapturedRows({c: [] for c in sig.columns}, [], [], [], [])
    for rec in records:
        if (start is not None and rec.time < start) or (end is not None and rec.time >= end):
            continue
        try:
            batch = scoring.parse(rec.input_body, rec.input_content_type, sig, max_rows=None)
            predictions = json.loads(rec.output_body or b"{}").get("predictions")
        except (ValueError, AttributeError):
            out.skipped += 1
            continue
        if not isinstance(predictions, list) or len(predictions) != batch.n_rows:
            out.skipped += 1
            continue
        for name in sig.columns:
            out.columns[name].extend(batch.columns[name])
        out.predictions.extend(predictions)
        out.inference_ids.extend([rec.inference_id] * batch.n_rows)
        out.row_in_request.extend(range(batch.n_rows))
        out.times.extend([rec.time] * batch.n_rows)
    return out
