"""Optimistic concurrency over the metadata store: read, change, write back only if nobody
wrote in between; on a conflict, read again and retry. The one loop every read-modify-write
in the domain goes through."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from chalicelib import tables
from chalicelib.errors import ConflictError, NotFoundError
from chalicelib.ports import ConditionFailedError, Delete, MetadataStore, Write

ATTEMPTS = 20

Change = Callable[[dict[str, Any]], dict[str, Any] | None]


def update(
    metadata: MetadataStore,
    pk: str,
    sk: str,
    change: Change,
    *,
    what: str,
    attempts: int = ATTEMPTS,
) -> dict[str, Any]:
    """Apply ``change`` to the item at (pk, sk) and return what is stored afterwards.

    ``change`` gets a copy of the current item and returns the new one, or None to leave it
    as it is (the current item is returned). It may raise to abort; it may run several times.
    """
    for attempt in range(attempts):
        record = metadata.get(pk, sk)
        if record is None:
            raise NotFoundError(f"{what} not found")
        new = change(dict(record.item))
        if new is None:
            return record.item
        try:
            metadata.put(Write(pk, sk, new, record.rev))
        except ConditionFailedError:
            _backoff(attempt)
            continue
        return new
    raise ConflictError(f"{what} is being changed concurrently; try again")


def retry(action: Callable[[], Any], *, what: str, attempts: int = ATTEMPTS) -> Any:
    """Run ``action`` (which reads and writes conditionally itself) until it does not hit
    a ConditionFailedError."""
    for attempt in range(attempts):
        try:
            return action()
        except ConditionFailedError:
            _backoff(attempt)
    raise ConflictError(f"{what} is being changed concurrently; try again")


def _backoff(attempt: int) -> None:
    if attempt >= 2:  # the first retries are immediate; then a little jitter
        time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - not cryptographic


@contextmanager
def lease(
    metadata: MetadataStore, name: str, *, ttl: float = 300.0, wait: float = 60.0
) -> Iterator[None]:
    """Hold the named lease (e.g. one endpoint's) while the block runs: one holder at a time,
    across processes and Lambda containers. A holder that died loses it after ``ttl``
    seconds; waiting longer than ``wait`` seconds is a 409 (the caller may retry)."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        now = time.time()
        current = metadata.get(tables.LEASES, name)
        free = current is None or float(current.item["expires_at"]) < now
        if free:
            item = {"owner": owner, "expires_at": now + ttl}
            try:
                metadata.put(Write(tables.LEASES, name, item, current.rev if current else 0))
                break
            except ConditionFailedError:
                pass
        if time.monotonic() > deadline:
            raise ConflictError(f"{name} is busy with another change; try again")
        attempt += 1
        time.sleep(min(0.2, 0.01 * attempt))
    try:
        yield
    finally:
        held = metadata.get(tables.LEASES, name)
        if held is not None and held.item.get("owner") == owner:
            with contextlib.suppress(ConditionFailedError):
                metadata.put_many([Delete(tables.LEASES, name, held.rev)])
