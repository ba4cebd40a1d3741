"""The REST edge: one route decorator for every endpoint of the API.

``Api.route`` registers a Chalice route and, in one place for all routes:

- parses and validates the input: path parameters (names and version numbers), the query
  string (a pydantic model) and the JSON body (a pydantic model; size, nesting depth and
  NaN/Infinity checked before pydantic sees it), passed to the handler as keyword arguments;
- maps errors to answers: a domain error (``MLPipeError``) or a contract error
  (``mlcontract.scoring.RequestError``) becomes its 4xx/5xx with ``{"Code", "Message"}``;
  anything unexpected is logged and becomes a bare 500 — never a stack trace;
- serializes the answer as strict JSON (a non-finite number becomes null);
- records the operation (summary, models, statuses) from which ``openapi.py`` generates the
  OpenAPI document, so the document cannot drift from the routes.

Handlers stay thin: take the parsed input, call the domain with ``ports()``, return.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalice import Blueprint, IAMAuthorizer, Response
from pydantic import BaseModel, ValidationError

from chalicelib.errors import BadRequestError, MLPipeError, PayloadTooLargeError
from chalicelib.names import check_name
from chalicelib.settings import get_settings
from mlcontract import jsonlimits
from mlcontract.scoring import RequestError

log = logging.getLogger("mlpipe.api")

# On AWS every route but the public ones needs a SigV4-signed caller allowed
# execute-api:Invoke (these routes start SageMaker work that bills by the hour). The local
# server admits all requests; it listens on loopback only.
iam = IAMAuthorizer()

ERROR_DESCRIPTIONS = {
    400: "Bad request: the input is invalid (the message says what)",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests: a limit on concurrent work is reached",
    500: "Internal error (logged; no detail is returned)",
    503: "A dependency is unavailable; retry",
    507: "Insufficient storage",
}
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    description: str
    status: int
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    content_types: tuple[str, ...]
    errors: tuple[int, ...]
    public: bool
    raw_body: dict[str, Any] | None = None  # media type -> schema, for non-model bodies
    response: dict[str, Any] = field(default_factory=dict)


OPERATIONS: list[Operation] = []


def _error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> Response:
    # details: structured extras of an error (a data contract's violation report);
    # retry_after: seconds before a retry makes sense (the Retry-After header).
    headers: dict[str, str | list[str]] | None = (
        {"Retry-After": str(retry_after)} if retry_after is not None else None
    )
    return Response(
        body={"Code": code, "Message": message, **(details or {})},
        status_code=status,
        headers=headers,
    )


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON syntax, but no finite number
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: no NaN or Infinity, bounded nesting; a 400 that says what is wrong."""
    if not raw:
        raw = b"{}"
    if jsonlimits.too_deep(raw):  # before json.loads recurses into it
        raise BadRequestError(
            f"the JSON body is nested too deeply (more than {jsonlimits.MAX_DEPTH} levels)"
        )
    try:
        return json.loads(raw, parse_constant=_no_constants, parse_float=_finite_float)
    except RecursionError:
        raise BadRequestError("the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise BadRequestError("the request body is not valid UTF-8") from None
    except ValueError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(_finite(body), allow_nan=False, separators=(",", ":"))
    return Response(
        body=text,
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def path_param(name: str, value: str) -> str | int:
    if name == "version":
        if not value.isdigit() or int(value) < 1 or len(value) > 9:
            raise BadRequestError(f"version must be a positive integer, got {value!r}")
        return int(value)
    try:
        return check_name(value, name.replace("_", " "))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


class Api(Blueprint):
    """A Chalice blueprint whose routes parse, validate, map errors and document alike."""

    def operation(
        self,
        path: str,
        method: str,
        *,
        status: int = 200,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        errors: Sequence[int] = (),
        content_types: Sequence[str] = ("application/json",),
        public: bool = False,
        raw_body: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        params = _PARAM.findall(path)
        statuses = set(errors) | {500}
        if params or body is not None or query is not None or raw_body is not None:
            statuses.add(400)
        if params:
            statuses.add(404)
        if body is not None or raw_body is not None:
            statuses |= {413, 415}

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            doc = (fn.__doc__ or "").strip()
            summary, _, description = doc.partition("\n")
            OPERATIONS.append(
                Operation(
                    method=method,
                    path=path,
                    summary=summary.strip(),
                    description=" ".join(description.split()),
                    status=status,
                    body=body,
                    query=query,
                    content_types=tuple(content_types),
                    errors=tuple(sorted(statuses)),
                    public=public,
                    raw_body=raw_body,
                    response=response or {},
                )
            )

            @functools.wraps(fn)
            def view(**path_args: str) -> Response:
                try:
                    kwargs: dict[str, Any] = {k: path_param(k, v) for k, v in path_args.items()}
                    request = self.current_request
                    if query is not None:
                        kwargs["query"] = _validate(query, dict(request.query_params or {}))
                    if body is not None:
                        kwargs["body"] = _validate(body, parse_json(_raw(request)))
                    result = fn(**kwargs)
                    if isinstance(result, Response):
                        return result
                    return to_response(result, status)
                except MLPipeError as exc:
                    if exc.status_code >= 500:
                        log.error("%s %s: %s: %s", method, path, exc.code, exc.message)
                    return _error(
                        exc.status_code,
                        exc.code,
                        exc.message,
                        getattr(exc, "details", None),
                        exc.retry_after,
                    )
                except RequestError as exc:
                    code = "UnsupportedMediaType" if exc.status == 415 else "BadRequestError"
                    return _error(exc.status, code, str(exc))
                except Exception:
                    log.exception("unhandled error in %s %s", method, path)
                    return _error(500, "InternalError", "internal error")

            self.route(
                path,
                methods=[method],
                content_types=list(content_types),
                authorizer=None if public else iam,
            )(view)
            return fn

        return register


def _raw(request: Any) -> bytes:
    raw = request.raw_body or b""
    raw = raw.encode() if isinstance(raw, str) else raw
    limit = get_settings().max_inline_bytes
    if len(raw) > limit:
        raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
    return bytes(raw)


def request_bytes(request: Any) -> bytes:
    """The raw body of a non-JSON route (uploads, predictions), size-checked."""
    return _raw(request)


def _validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # only the caller's input is a 400; ours would be a bug
        raise BadRequestError(describe_validation(exc)) from None
