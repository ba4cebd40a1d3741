"""Domain errors. Each carries its HTTP status; routes turn them into ``{"Code", "Message"}``."""

from __future__ import annotations


class MLPipeError(Exception):
    status_code = 500
    code = "InternalError"
    # Seconds a caller should wait before trying again (the Retry-After header), if any.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(MLPipeError):
    status_code = 400
    code = "BadRequestError"


class NotFoundError(MLPipeError):
    status_code = 404
    code = "NotFoundError"


class ConflictError(MLPipeError):
    status_code = 409
    code = "ConflictError"


class UnsupportedMediaTypeError(MLPipeError):
    status_code = 415
    code = "UnsupportedMediaType"


class PayloadTooLargeError(MLPipeError):
    status_code = 413
    code = "PayloadTooLargeError"


class ServiceUnavailableError(MLPipeError):
    """A dependency (the orchestrator, ...) refused or failed; the caller may retry."""

    status_code = 503
    code = "ServiceUnavailableError"
    retry_after = 5


class StepError(MLPipeError):
    """A pipeline step failed for a reason worth showing the user (bad data, failed job)."""

    code = "StepError"


class TransientError(MLPipeError):
    """Worth retrying: the state machine's Retry matches on this name."""

    code = "TransientError"


class TooManyRequestsError(MLPipeError):
    """A limit on concurrent work is reached; the caller may retry later."""

    status_code = 429
    code = "TooManyRequestsError"
    retry_after = 10


class InsufficientStorageError(MLPipeError):
    """The store is full; nothing was written."""

    status_code = 507
    code = "InsufficientStorageError"
