"""Resolve a credentials reference to a password, at the moment of use only."""

from __future__ import annotations

import os
from typing import Any

from chalicelib.errors import BadRequestError
from chalicelib.settings import Settings
from chalicelib.sources.models import Credentials, EnvCredentials


def secrets_client(settings: Settings) -> Any:
    """Secrets Manager: the embedded stack's (moto) locally, AWS's otherwise."""
    if settings.profile == "local" and settings.aws_endpoint_url:
        import boto3

        from chalicelib import aws

        return boto3.session.Session().client(
            "secretsmanager",
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the embedded server's dummy keys
            config=aws.config(),
        )
    from chalicelib import aws

    return aws.client("secretsmanager")


def resolve(settings: Settings, ref: Credentials) -> tuple[str | None, str]:
    """(username override or None, password). Errors name the reference, never a value."""
    if isinstance(ref, EnvCredentials):
        value = os.environ.get(ref.env)
        if value is None:
            raise BadRequestError(
                f"credentials: environment variable {ref.env!r} is not set on the server"
            )
        return None, value
    from chalicelib.adapters.secrets import SecretNotFoundError, SecretsManager

    try:
        return SecretsManager(secrets_client(settings)).password(ref.secret_arn)
    except SecretNotFoundError as exc:
        raise BadRequestError(f"credentials: {exc}") from None
