"""Dataset routes: ingest a version, upload one as the request body, list, read, delete."""

from __future__ import annotations

from typing import Any

from chalice import Response
from pydantic import BaseModel, ConfigDict

from chalicelib import datasets, uploads
from chalicelib.api import Api, request_bytes
from chalicelib.names import Name
from chalicelib.runtime import ports
from chalicelib.schemas import DatasetCreate, DatasetFormat

api = Api(__name__)

_UPLOAD_BODY = {
    "text/csv": {"type": "string"},
    "application/json": {"type": "array", "items": {"type": "object"}},
    "application/x-ndjson": {"type": "string"},
    "application/jsonl": {"type": "string"},
    "application/vnd.apache.parquet": {"type": "string", "format": "binary"},
    "application/octet-stream": {"type": "string", "format": "binary"},
}


@api.operation("/datasets", "POST", status=201, body=DatasetCreate, errors=(409, 507))
def create_dataset(body: DatasetCreate) -> dict[str, Any]:
    """Ingest a dataset version from an inline, file, sql, s3 or http source.

    An optional data contract is checked on this version and kept for later ones; policy
    reject answers 400 ContractViolation with a report per rule, quarantine stores the bad
    rows apart (GET .../quarantine).
    """
    return datasets.create(ports(), body)


@api.operation(
    "/datasets/{name}/versions",
    "POST",
    status=201,
    content_types=sorted(datasets.UPLOAD_FORMATS),
    raw_body=_UPLOAD_BODY,
    errors=(409, 507),
)
def upload_dataset_version(name: str) -> dict[str, Any]:
    """Upload a new dataset version as the request body.

    CSV (text/csv), JSON (application/json: an array of objects), JSON Lines
    (application/x-ndjson) or Parquet (application/vnd.apache.parquet); at most
    MLPIPE_MAX_INLINE_BYTES (6 MiB) — larger data goes through a file source.
    """
    request = api.current_request
    content_type = request.headers.get("content-type", "")
    return datasets.upload(ports(), name, request_bytes(request), content_type)


@api.operation("/datasets", "GET")
def list_datasets() -> dict[str, Any]:
    """List datasets."""
    return {"datasets": datasets.list_all(ports())}


@api.operation("/datasets/{name}", "GET")
def get_dataset(name: str) -> dict[str, Any]:
    """A dataset and its versions."""
    return datasets.describe(ports(), name)


@api.operation("/datasets/{name}", "DELETE", errors=(409,))
def delete_dataset(name: str) -> dict[str, Any]:
    """Delete a dataset: every version and its data (409 while a pipeline uses it)."""
    return datasets.delete(ports(), name)


@api.operation("/datasets/{name}/versions/{version}", "GET")
def get_dataset_version(name: str, version: int) -> dict[str, Any]:
    """A dataset version: schema, row count, profile, status."""
    p = ports()
    record = datasets.get_version(p, name, version)
    public = {k: v for k, v in record.items() if k not in ("key", "profile_key", "quarantine_key")}
    return {**public, "profile": datasets.get_profile(p, record)}


@api.operation("/datasets/{name}/versions/{version}", "DELETE", errors=(409,))
def delete_dataset_version(name: str, version: int) -> dict[str, Any]:
    """Delete one dataset version and its data (409 while a pipeline pins it)."""
    return datasets.delete(ports(), name, version)


@api.operation(
    "/datasets/{name}/versions/{version}/quarantine",
    "GET",
)
def get_dataset_quarantine(name: str, version: int) -> Response:
    """The rows of a version that broke its contract (policy quarantine), as CSV."""
    import io

    import pandas as pd

    raw = datasets.quarantine(ports(), name, version)
    text = pd.read_parquet(io.BytesIO(raw)).to_csv(index=False)
    return Response(body=text, status_code=200, headers={"Content-Type": "text/csv"})


class UploadStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: DatasetFormat = "csv"


@api.operation("/datasets/{name}/uploads", "POST", status=201, body=UploadStart)
def start_dataset_upload(name: str, body: UploadStart) -> dict[str, Any]:
    """Start a large upload: PUT the file to the returned URL (on AWS a presigned S3 URL),
    then POST /datasets with {"source": {"type": "upload", "upload_id": ...}}."""
    checked = _name(name)
    headers = api.current_request.headers
    base = f"{headers.get('x-forwarded-proto', 'http')}://{headers.get('host', '127.0.0.1')}"
    return uploads.start(ports(), checked, body.format, base)


@api.operation(
    "/datasets/{name}/uploads/{upload_id}",
    "PUT",
    content_types=["application/octet-stream", *sorted(datasets.UPLOAD_FORMATS)],
    raw_body={"application/octet-stream": {"type": "string", "format": "binary"}},
)
def put_dataset_upload(name: str, upload_id: str) -> dict[str, Any]:
    """The local stack's stand-in for the presigned S3 PUT of an upload."""
    raw = api.current_request.raw_body or b""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    return uploads.put(ports(), _name(name), upload_id, data)


def _name(name: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    from chalicelib.errors import BadRequestError

    try:
        return str(TypeAdapter(Name).validate_python(name))
    except ValidationError as exc:
        raise BadRequestError(f"dataset name: {exc.errors()[0]['msg']}") from None
