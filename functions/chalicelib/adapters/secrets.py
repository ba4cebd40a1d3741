"""Secrets Manager: the password of a database source, read by reference at ingestion time.
The value is used once to connect and never stored, logged or returned."""

from __future__ import annotations

import json
from typing import Any


class SecretNotFoundError(Exception):
    """The secret does not exist, or this role may not read it."""


class SecretsManager:
    def __init__(self, client: Any) -> None:
        self.secrets = client

    def password(self, arn: str) -> tuple[str | None, str]:
        """(username or None, password) from a plain-text secret or a JSON one with
        'password' (and optionally 'username'), as RDS-managed secrets are."""
        try:
            value = self.secrets.get_secret_value(SecretId=arn)
        except self.secrets.exceptions.ResourceNotFoundException:
            raise SecretNotFoundError(f"secret {arn} not found") from None
        except Exception as exc:  # AccessDenied, decryption failures: say which, not why
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise SecretNotFoundError(f"secret {arn} could not be read ({code})") from None
        text = value.get("SecretString")
        if text is None:
            raise SecretNotFoundError(f"secret {arn} holds binary data, not a password")
        try:
            doc = json.loads(text)
        except ValueError:
            return None, text
        if isinstance(doc, dict):
            if not isinstance(doc.get("password"), str):
                raise SecretNotFoundError(f"secret {arn} is JSON without a 'password' string")
            user = doc.get("username")
            return (user if isinstance(user, str) else None), doc["password"]
        return None, text
