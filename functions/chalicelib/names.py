"""Safe identifiers: names become object-store keys, job names and URL path segments."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# Starts with a letter or digit; letters, digits, '-', '_' and '.'; no '..'; <= 63 chars so it
# also fits SageMaker resource names once prefixed.
PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_NAME = re.compile(PATTERN)  # used with fullmatch: a trailing newline is not a name


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe identifier: use 1-63 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit, without '..'"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]
