"""Predictions in the API: a request is parsed and checked by ``mlcontract.scoring`` (the same
parser the model's own hooks and the model server use) and forwarded in canonical form."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import BadRequestError, UnsupportedMediaTypeError
from mlcontract import scoring

MAX_ROWS = scoring.MAX_ROWS


def parse(body: bytes, content_type: str, signature: list[dict[str, str]]) -> dict[str, Any]:
    """A request body -> canonical ``{"dataframe_split": {"columns", "data"}}``, or the 4xx
    the contract names (415 for the media type, 400 for everything else)."""
    try:
        return scoring.parse(body, content_type, signature).to_split()
    except scoring.UnsupportedMediaTypeRequestError as exc:
        raise UnsupportedMediaTypeError(str(exc)) from exc
    except scoring.RequestError as exc:
        raise BadRequestError(str(exc)) from exc
