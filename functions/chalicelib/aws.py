"""The one place boto3 clients are made: lazily, never at import time (moto must start first)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.settings import get_settings

CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5)


@cache
def client(service: str) -> Any:
    """A boto3 client for ``service`` in the configured region.

    The endpoint is left to botocore, which reads ``AWS_ENDPOINT_URL`` and the per-service
    ``AWS_ENDPOINT_URL_<SERVICE>`` (LocalStack for some services, AWS for others); passing
    ``endpoint_url`` here would override the per-service ones.
    """
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=get_settings().region,
        config=CONFIG,
    )


def reset_clients() -> None:
    client.cache_clear()
