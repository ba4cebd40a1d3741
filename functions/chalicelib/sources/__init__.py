"""Remote dataset sources: ``sql``, ``s3`` and ``http``. Each reader returns a DataFrame
and the lineage to record with the version (the source without secrets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chalicelib.settings import Settings
from chalicelib.sources.models import HttpSource, S3Source, SqlSource

if TYPE_CHECKING:
    import pandas as pd

RemoteSource = SqlSource | S3Source | HttpSource
Parse = Callable[[bytes, str], "pd.DataFrame"]


def read(
    settings: Settings, source: RemoteSource, fmt: str, parse: Parse
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if isinstance(source, SqlSource):
        from chalicelib.sources import sql

        table, lineage = sql.read(settings, source)
        return table.to_pandas(), lineage
    if isinstance(source, S3Source):
        from chalicelib.sources import s3

        return s3.read(settings, source, fmt, parse)
    from chalicelib.sources import http, s3

    raw, lineage = http.read(settings, source, fmt)
    if source.pagination is not None or source.records_path:
        return parse(raw, "json"), lineage  # pages of records, merged into one JSON array
    path = urlsplit(source.url).path.lower()
    for suffix, kind in s3.COMPRESSED.items():
        if path.endswith(suffix):
            raw = s3.decompress(raw, kind, lineage["url"])
    return parse(raw, fmt), lineage
