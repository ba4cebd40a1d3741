"""The one place boto3 clients are made: lazily, never at import time (moto must start first)."""

from __future__ import annotations

from functools import cache
from typing import Any

from chalicelib.settings import get_settings

# boto3 is imported on the first client, not with the app (~0.3 s of a cold start).
CONFIG_KWARGS: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 4},
    "connect_timeout": 5,
}


def config() -> Any:
    from botocore.config import Config

    return Config(**CONFIG_KWARGS)


@cache
def client(service: str) -> Any:
    """A boto3 client for ``service`` in the configured region.

    The endpoint is left to botocore, which reads ``AWS_ENDPOINT_URL`` and the per-service
    ``AWS_ENDPOINT_URL_<SERVICE>`` (LocalStack for some services, AWS for others); passing
    ``endpoint_url`` here would override the per-service ones.
    """
    import boto3

    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name=get_settings().region,
        config=config(),
    )


def reset_clients() -> None:
    client.cache_clear()


def session() -> Any:
    """A boto3 session in the configured region (for libraries that take sessions)."""
    import boto3

    return boto3.session.Session(region_name=get_settings().region)
