"""Large uploads that bypass the API's body limit (API Gateway: 10 MB).

1. ``POST /datasets/{name}/uploads`` -> an upload id and a URL to PUT the file to: on AWS a
   presigned S3 PUT URL into the artefact bucket (the bytes never pass through a Lambda);
   locally the API's own ``PUT /datasets/{name}/uploads/{upload_id}``, which writes to the
   same key of the local object store.
2. ``POST /datasets`` with ``{"type": "upload", "upload_id": ...}`` ingests the uploaded
   object like any other source, then deletes it.

The upload id (128 random bits) is the capability: it is recorded with its dataset, format
and expiry, and a PUT or an ingest of an unknown or expired id is a 404/400.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import BadRequestError, NotFoundError, PayloadTooLargeError
from chalicelib.ports import Write
from chalicelib.runtime import Ports
from chalicelib.timeutil import now_iso

EXPIRES_SECONDS = 3600


def table(name: str) -> str:
    return f"dataset-uploads#{name}"


def key(name: str, upload_id: str) -> str:
    # Under the dataset's own prefix: the functions may write there (template.yaml).
    return f"datasets/{name}/uploads/{upload_id}/data"


def start(ports: Ports, name: str, fmt: str, base_url: str) -> dict[str, Any]:
    upload_id = secrets.token_hex(16)
    expires = datetime.now(UTC) + timedelta(seconds=EXPIRES_SECONDS)
    object_key = key(name, upload_id)
    presign = getattr(ports.store, "presign_put", None)
    url = presign(object_key, EXPIRES_SECONDS) if presign is not None else None
    if url is None:  # the local object store: the API takes the PUT itself
        url = f"{base_url.rstrip('/')}/datasets/{name}/uploads/{upload_id}"
    ports.metadata.put(
        Write(
            table(name),
            upload_id,
            {"name": name, "upload_id": upload_id, "format": fmt, "key": object_key,
             "expires_at": expires.isoformat(timespec="seconds"), "created_at": now_iso()},
            0,
        )
    )  # fmt: skip
    return {
        "upload_id": upload_id,
        "method": "PUT",
        "url": url,
        "expires_at": expires.isoformat(timespec="seconds"),
        "max_bytes": ports.settings.upload_max_bytes,
        "then": {
            "POST /datasets": {
                "name": name,
                "format": fmt,
                "source": {"type": "upload", "upload_id": upload_id},
            }
        },
    }


def _pending(ports: Ports, name: str, upload_id: str) -> dict[str, Any]:
    record = ports.metadata.get(table(name), upload_id)
    if record is None:
        raise NotFoundError(f"dataset {name!r} has no upload {upload_id!r}")
    if datetime.fromisoformat(record.item["expires_at"]) < datetime.now(UTC):
        raise BadRequestError(f"upload {upload_id!r} expired at {record.item['expires_at']}")
    return record.item


def put(ports: Ports, name: str, upload_id: str, body: bytes) -> dict[str, Any]:
    """The local stack's stand-in for the presigned S3 PUT."""
    item = _pending(ports, name, upload_id)
    if len(body) > ports.settings.upload_max_bytes:
        raise PayloadTooLargeError(
            f"the upload is larger than {ports.settings.upload_max_bytes} bytes"
        )
    ports.store.put_bytes(item["key"], body)
    return {"upload_id": upload_id, "bytes": len(body)}


def take(ports: Ports, name: str, upload_id: str, fmt: str) -> tuple[bytes, dict[str, Any]]:
    """The uploaded bytes and their lineage; a 400 when nothing was uploaded yet."""
    item = _pending(ports, name, upload_id)
    if item["format"] != fmt:
        raise BadRequestError(
            f"upload {upload_id!r} was started as {item['format']!r}, not {fmt!r}"
        )
    try:
        raw = ports.store.get_bytes(item["key"])
    except NotFoundError:
        raise BadRequestError(
            f"nothing was uploaded to {upload_id!r} yet: PUT the file to its URL first"
        ) from None
    if len(raw) > ports.settings.upload_max_bytes:
        raise PayloadTooLargeError(
            f"the upload is larger than {ports.settings.upload_max_bytes} bytes"
        )
    return raw, {"type": "upload", "upload_id": upload_id, "bytes": len(raw)}


def finish(ports: Ports, name: str, upload_id: str) -> None:
    """After the version is READY: the upload's object and record go."""
    ports.store.delete_prefix(key(name, upload_id).rsplit("/", 1)[0])
    ports.metadata.delete(table(name), upload_id)
