"""Large fields of metadata records live in the object store: a DynamoDB item stops at
400 KB, and a schema or a signature grows with the number of columns (2,000 x 256
characters is ~600 KB). The record keeps ``<field>_key``; readers get the field back through
``hydrate``, so the domain sees whole records either way."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.ports import ObjectStore

# JSON bytes of one field kept inside a record; beyond it the field is offloaded.
INLINE_LIMIT = 32_000


def offload(store: ObjectStore, record: dict[str, Any], field: str, key: str) -> dict[str, Any]:
    value = record.get(field)
    data = json.dumps(value, separators=(",", ":")).encode()
    if value is None or len(data) <= INLINE_LIMIT:
        return record
    store.put_bytes(key, data)
    return {**{k: v for k, v in record.items() if k != field}, f"{field}_key": key}


def hydrate(store: ObjectStore, record: dict[str, Any], field: str) -> dict[str, Any]:
    key = record.get(f"{field}_key")
    if key is None or field in record:
        return record
    return {**record, field: json.loads(store.get_bytes(key))}
