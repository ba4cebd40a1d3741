"""``s3`` sources: one object, every object under a prefix (same format, same columns), or
a partitioned Parquet dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.errors import BadRequestError, NotFoundError, PayloadTooLargeError
from chalicelib.settings import Settings
from chalicelib.sources.models import S3Source

if TYPE_CHECKING:
    import pandas as pd

    from chalicelib.adapters.s3_source import S3Reader

COMPRESSED = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def reader(settings: Settings) -> S3Reader:
    import boto3

    from chalicelib import aws
    from chalicelib.adapters.s3_source import S3Reader

    if settings.profile == "local" and settings.aws_endpoint_url:
        session = boto3.session.Session(
            region_name=settings.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the embedded server's dummy keys
        )
        return S3Reader(session, settings.aws_endpoint_url)
    if settings.profile == "local":
        raise BadRequestError(
            "s3 sources need the embedded stack's S3 (make run) or the aws profile"
        )
    return S3Reader(aws.session())


def read(
    settings: Settings, source: S3Source, fmt: str, parse: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``parse(raw, fmt)`` turns one object's bytes into a frame (datasets.parse_table)."""
    import pandas as pd

    from chalicelib.adapters.s3_source import S3NotFoundError

    s3 = reader(settings)
    lineage: dict[str, Any] = {"type": "s3", "uri": source.uri, "format": fmt}
    try:
        if source.dataset:
            if fmt != "parquet":
                raise BadRequestError('a partitioned dataset is read as "format": "parquet"')
            objects = s3.objects(source.uri)
            _check_size(settings, objects)
            frame = s3.dataset(source.uri)
            for name in frame.columns:  # partition keys arrive as categoricals
                if isinstance(frame[name].dtype, pd.CategoricalDtype):
                    frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
            return frame, {**lineage, "dataset": True, "objects": len(objects)}
        objects = s3.objects(source.uri)
        _check_size(settings, objects)
        frames = []
        for uri, _size in objects:
            raw = _decompress(s3.get(uri), uri)
            frames.append(parse(raw, fmt))
        if len(frames) > 1:
            first = list(frames[0].columns)
            for (uri, _), frame in zip(objects, frames, strict=True):
                if list(frame.columns) != first:
                    raise BadRequestError(
                        f"{uri} has columns {list(frame.columns)[:10]}, the first object "
                        f"{first[:10]}: every object under a prefix needs the same columns"
                    )
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return frame, {**lineage, "objects": len(objects)}
    except S3NotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except (BadRequestError, NotFoundError, PayloadTooLargeError):
        raise
    except Exception as exc:  # botocore ClientError (AccessDenied, NoSuchBucket), arrow errors
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchBucket", "NoSuchKey", "404"):
            raise NotFoundError(f"{source.uri}: {code}") from None
        what = code or f"{type(exc).__name__}: {str(exc)[:200]}"
        raise BadRequestError(f"could not read {source.uri}: {what}") from None


def _check_size(settings: Settings, objects: list[tuple[str, int]]) -> None:
    total = sum(size for _, size in objects)
    if total > settings.s3_max_bytes:
        raise PayloadTooLargeError(
            f"the S3 source holds {total} bytes, more than MLPIPE_S3_MAX_BYTES="
            f"{settings.s3_max_bytes}"
        )


def _decompress(raw: bytes, uri: str) -> bytes:
    for suffix, kind in COMPRESSED.items():
        if uri.lower().endswith(suffix):
            return decompress(raw, kind, uri)
    return raw


def decompress(raw: bytes, kind: str, where: str) -> bytes:
    import gzip

    try:
        if kind == "gzip":
            return gzip.decompress(raw)
        import pyarrow as pa

        return bytes(pa.input_stream(pa.BufferReader(raw), compression="zstd").read())
    except Exception:
        raise BadRequestError(f"{where} is not valid {kind} data") from None
