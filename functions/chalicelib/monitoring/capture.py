"""Reading captured requests back from the object store (SageMaker's data-capture layout,
``mlcontract.capture``): the hour folders of a time window, per variant.

Small windows only (the feedback join, the local in-process drift check): the drift job reads
large windows from its own input directory (``driftstats.frame_from_captures``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlcontract import capture

if TYPE_CHECKING:  # the domain loads no AWS SDK at run time
    from chalicelib.ports import ObjectStore


def keys_in_window(
    store: ObjectStore,
    endpoint: str,
    variants: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
    prefix: str = capture.DEFAULT_PREFIX,
) -> list[str]:
    keys: list[str] = []
    for variant in variants:
        for hour in capture.hours(start, end):
            folder = f"{prefix}/{capture.hour_path(endpoint, variant, hour)}"
            keys.extend(k for k in store.list(folder) if k.endswith(".jsonl"))
    return keys


def records(
    store: ObjectStore,
    endpoint: str,
    variants: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
    prefix: str = capture.DEFAULT_PREFIX,
) -> Iterator[capture.Captured]:
    """Captured requests with ``start <= inferenceTime < end``."""
    for key in keys_in_window(store, endpoint, variants, start, end, prefix):
        for rec in capture.parse_lines(store.get_bytes(key)):
            if start <= rec.time < end:
                yield rec


def load_frame(
    store: ObjectStore,
    endpoint: str,
    signature: Sequence[Mapping[str, str]],
    start: dt.datetime,
    end: dt.datetime,
    variants: Sequence[str] = ("AllTraffic",),
    prefix: str = capture.DEFAULT_PREFIX,
) -> Any:
    """The captured rows of a window as a pandas DataFrame: the signature's columns, then
    ``prediction``, ``inference_id``, ``row`` (index within its request) and
    ``inference_time``."""
    import pandas as pd

    rows = capture.to_rows(records(store, endpoint, variants, start, end, prefix), signature)
    frame = pd.DataFrame(rows.columns, columns=[f["name"] for f in signature])
    frame["prediction"] = pd.Series(rows.predictions, dtype=object)
    frame["inference_id"] = rows.inference_ids
    frame["row"] = rows.row_in_request
    frame["inference_time"] = pd.to_datetime(rows.times, utc=True)
    return frame
