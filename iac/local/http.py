"""The Chalice app as a WSGI application, so a production-grade server (waitress) serves it
locally: HTTP/1.1 keep-alive with TCP_NODELAY (no 40 ms stalls between a keep-alive client's
requests), a real listen backlog and a worker pool. Requests go through Chalice's own local
API Gateway emulation (routing, binary types, the Lambda event), as `chalice local` does.

Unknown routes answer 404 ``{"Code": "NotFoundError", ...}``, like every other error of this
API (API Gateway's own answer is a 403 "Missing Authentication Token"; the template maps it
to the same 404 on AWS).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import ForbiddenError, LocalGateway, LocalGatewayException

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
    507: "Insufficient Storage",
}  # fmt: skip


class ChaliceWsgi:
    def __init__(self, app: Chalice, stage: str = "local") -> None:
        config = Config.create(chalice_stage=stage, app_name=app.app_name)
        self.gateway = LocalGateway(app, config)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/") or "/"
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if length:
            headers["content-length"] = str(length)
        try:
            response = self.gateway.handle_request(method, path, headers, body)
        except ForbiddenError:
            return self._json(start_response, 404, {
                "Code": "NotFoundError",
                "Message": f"no route {method} {environ.get('PATH_INFO', '/')}; "
                "see /openapi.json",
            })  # fmt: skip
        except LocalGatewayException as exc:
            start_response(_status(exc.CODE), list(exc.headers.items()))
            return [exc.body or b""]
        status = int(response["statusCode"])
        out_headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers.extend((key, str(v)) for v in values)
        raw = response.get("body")
        if raw is None:
            data = b""
        elif response.get("isBase64Encoded"):
            data = base64.b64decode(raw)
        else:
            data = raw.encode() if isinstance(raw, str) else bytes(raw)
        out_headers = [h for h in out_headers if h[0].lower() != "content-length"]
        out_headers.append(("Content-Length", str(len(data))))
        start_response(_status(status), out_headers)
        return [data]

    @staticmethod
    def _json(start_response: StartResponse, status: int, body: Any) -> Iterable[bytes]:
        data = json.dumps(body).encode()
        start_response(
            _status(status),
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]


def _status(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Status')}"
