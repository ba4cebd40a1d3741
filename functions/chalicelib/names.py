"""Safe identifiers: names become object-store keys, job names and URL path segments.

Every name reaches more than one service, so each kind of name is held to the strictest rule
among the services it reaches (``tests/unit/test_names.py`` checks them against botocore's own
service models):

- datasets, pipelines, models, aliases: S3 keys (any UTF-8 up to 1,024 bytes), DynamoDB keys
  (partition 2,048 / sort 1,024 bytes), URL path segments -> ``PATTERN`` below;
- endpoints: also SageMaker ``EndpointName`` ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``, after our
  resource prefix (``SAGEMAKER_PREFIX``) -> ``ENDPOINT_PATTERN``: letters, digits and '-'
  (no '_' or '.'), no trailing '-', at most 59 characters;
- SageMaker models and endpoint configs derive from these (``sagemaker_name``), jobs from the
  run id (``job_name``): both always match SageMaker's patterns.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

# Starts with a letter or digit; letters, digits, '-', '_' and '.'; no '..'; <= 63 chars so it
# also fits SageMaker resource names once prefixed.
PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_NAME = re.compile(PATTERN)  # used with fullmatch: a trailing newline is not a name

# Every SageMaker resource the service creates is named "mlp-..." and tagged with its owner,
# so IAM can be scoped to the prefix and nothing named otherwise is ever touched.
SAGEMAKER_PREFIX = "mlp-"
SAGEMAKER_MAX = 63  # EndpointName, ModelName, EndpointConfigName, *JobName
ENDPOINT_MAX = SAGEMAKER_MAX - len(SAGEMAKER_PREFIX)
ENDPOINT_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0," + str(ENDPOINT_MAX - 1) + "}"
_ENDPOINT = re.compile(ENDPOINT_PATTERN)
_SAGEMAKER = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe identifier: use 1-63 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit, without '..'"
        )
    return value


def check_endpoint_name(value: str, info: ValidationInfo) -> str:
    """Endpoint names become SageMaker endpoint names (``mlp-<name>``). Stored specs written
    before this rule (``context={"trusted": True}``) are read as they are."""
    if isinstance(info.context, dict) and info.context.get("trusted"):
        return check_name(value, "endpoint name")
    if not isinstance(value, str) or len(value) > ENDPOINT_MAX or not _ENDPOINT.fullmatch(value):
        raise ValueError(
            f"endpoint name {value!r} is not valid: use 1-{ENDPOINT_MAX} letters, digits or "
            "'-', starting and ending with a letter or digit (SageMaker allows no '_' or '.')"
        )
    return value


def sagemaker_name(*parts: str) -> str:
    """A SageMaker resource name from ``parts``: ``[a-zA-Z0-9-]``, at most 63 characters,
    no leading or trailing '-'; names that had to change get a hash, so they stay distinct."""
    raw = "-".join(parts)
    clean = re.sub(r"[^a-zA-Z0-9-]", "-", raw).strip("-")
    if clean != raw or len(clean) > SAGEMAKER_MAX or not _SAGEMAKER.fullmatch(clean):
        # The pattern bounds groups, not characters ('-*' repeats): the length is checked too.
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        clean = f"{clean[: SAGEMAKER_MAX - 9].rstrip('-')}-{digest}".lstrip("-")
    return clean


Name = Annotated[str, AfterValidator(check_name)]
EndpointName = Annotated[str, AfterValidator(check_endpoint_name)]
