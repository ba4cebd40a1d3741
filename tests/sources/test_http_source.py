"""``http`` sources against a REAL HTTP server on loopback (let past the SSRF guard with
MLPIPE_HTTP_ALLOW, as an operator would), and the guard's refusals without it."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from chalicelib import datasets
from chalicelib.errors import BadRequestError, PayloadTooLargeError
from chalicelib.runtime import Ports
from chalicelib.schemas import DatasetCreate
from chalicelib.sources.http import next_link
from tests.fakes import make_ports

CSV = "x,y,label\n" + "".join(f"{i},{i * 2},{'a' if i % 2 else 'b'}\n" for i in range(30))
RECORDS = [{"id": i, "score": i / 10, "tag": f"t{i % 3}"} for i in range(25)]
PAGE = 10


def _page(n: int) -> list[dict[str, Any]]:
    return RECORDS[(n - 1) * PAGE : n * PAGE]


class Handler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, body: bytes, ctype: str, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            self.wfile.write(body)

    def do_GET(self) -> None:
        Handler.requests.append(self.path)
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        port = self.server.server_address[1]
        if parts.path == "/data.csv":
            self._send(CSV.encode(), "text/csv")
        elif parts.path == "/data.jsonl.gz":
            lines = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
            self._send(gzip.compress(lines), "application/octet-stream")
        elif parts.path == "/data.parquet":
            buf = io.BytesIO()
            pd.DataFrame(RECORDS).to_parquet(buf)
            self._send(buf.getvalue(), "application/octet-stream")
        elif parts.path == "/gzip-encoded.csv":
            self._send(gzip.compress(CSV.encode()), "text/csv", Content_Encoding="gzip")
        elif parts.path == "/nested":
            self._send(json.dumps({"data": {"items": RECORDS}}).encode(), "application/json")
        elif parts.path == "/paged":  # ?page=N, an empty page at the end
            body = {"data": {"items": _page(int(q.get("page", "1")))}}
            self._send(json.dumps(body).encode(), "application/json")
        elif parts.path == "/linked":  # RFC 8288 Link: <...>; rel="next"
            n = int(q.get("p", "1"))
            headers = {}
            if _page(n + 1):
                headers["Link"] = f'</linked?p={n + 1}>; rel="next", </linked?p=1>; rel="first"'
            self._send(json.dumps(_page(n)).encode(), "application/json", **headers)
        elif parts.path == "/cursor":  # {"results": [...], "next": URL or null}
            n = int(q.get("p", "1"))
            following = f"http://127.0.0.1:{port}/cursor?p={n + 1}" if _page(n + 1) else None
            body = {"results": _page(n), "meta": {"next": following}}
            self._send(json.dumps(body).encode(), "application/json")
        elif parts.path == "/forever":  # always a next page
            n = int(q.get("p", "1"))
            self._send(b'[{"a": 1}]', "application/json", Link=f'</forever?p={n + 1}>; rel="next"')
        elif parts.path == "/redirect":
            self._send(b"", "text/plain", 302, Location=q["to"])
        elif parts.path == "/big":
            self._send(b"a\n" + b"1\n" * 600_000, "text/csv")
        elif parts.path == "/slow":
            time.sleep(3)
            self._send(CSV.encode(), "text/csv")
        else:
            self._send(b"not found", "text/plain", 404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ports:
    monkeypatch.setenv("MLPIPE_HTTP_ALLOW", "127.0.0.1/32")
    return make_ports(tmp_path)


def ingest(ports: Ports, source: dict[str, Any], fmt: str = "csv") -> dict[str, Any]:
    req = DatasetCreate.model_validate(
        {"name": "web", "format": fmt, "source": {"type": "http", **source}}
    )
    return datasets.create(ports, req)


def frame(ports: Ports, version: int) -> pd.DataFrame:
    return datasets.load_frame(ports, datasets.get_version(ports, "web", version)["key"])


def test_formats(server: str, allowed: Ports) -> None:
    assert ingest(allowed, {"url": f"{server}/data.csv"})["rows"] == 30
    record = datasets.get_version(allowed, "web", 1)
    assert record["source"]["type"] == "http" and record["source"]["url"] == f"{server}/data.csv"
    assert ingest(allowed, {"url": f"{server}/data.jsonl.gz"}, "jsonl")["rows"] == 25
    assert ingest(allowed, {"url": f"{server}/data.parquet"}, "parquet")["rows"] == 25
    assert ingest(allowed, {"url": f"{server}/gzip-encoded.csv"})["rows"] == 30
    nested = {"url": f"{server}/nested", "records_path": "data.items"}
    assert ingest(allowed, nested, "json")["rows"] == 25
    assert frame(allowed, 5)["id"].tolist() == list(range(25))


@pytest.mark.parametrize(
    ("source", "pages"),
    [
        ({"url": "/paged", "records_path": "data.items", "pagination": {"type": "page"}}, 4),
        ({"url": "/linked", "pagination": {"type": "link_header"}}, 3),
        ({"url": "/cursor", "records_path": "results",
          "pagination": {"type": "next_field", "path": "meta.next"}}, 3),
    ],
)  # fmt: skip
def test_pagination(server: str, allowed: Ports, source: dict[str, Any], pages: int) -> None:
    summary = ingest(allowed, {**source, "url": server + source["url"]}, "json")
    assert summary["rows"] == 25
    assert frame(allowed, 1)["id"].tolist() == list(range(25))  # every page, in order
    assert datasets.get_version(allowed, "web", 1)["source"]["pages"] == pages


def test_page_cap_timeout_size_cap_and_http_errors(
    server: str, allowed: Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    forever = {"url": f"{server}/forever", "pagination": {"type": "link_header"}, "max_pages": 5}
    with pytest.raises(BadRequestError, match=r"more than max_pages=5 pages"):
        ingest(allowed, forever, "json")
    with pytest.raises(BadRequestError, match=r"did not answer within 0\.5 s"):
        ingest(allowed, {"url": f"{server}/slow", "timeout_seconds": 0.5})
    with pytest.raises(BadRequestError, match="HTTP 404"):
        ingest(allowed, {"url": f"{server}/missing.csv"})
    small = make_ports(allowed.settings.data_dir, http_max_bytes=100_000)
    with pytest.raises(PayloadTooLargeError, match="larger than 100000 bytes"):
        ingest(small, {"url": f"{server}/big"})
    with pytest.raises(BadRequestError, match=r"records_path 'data\.nope' is not in"):
        ingest(allowed, {"url": f"{server}/nested", "records_path": "data.nope"}, "json")
    assert allowed.metadata.get("DATASETS", "web") is None  # nothing half-written


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # metadata
        "http://10.0.0.1/data.csv",  # private
        "http://192.168.1.1/data.csv",
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS's IPv6 metadata address
        "http://[::ffff:127.0.0.1]/data.csv",  # loopback, IPv4-mapped
        "http://2130706433/data.csv",  # 127.0.0.1 as one decimal number
        "http://0.0.0.0/data.csv",
    ],
)
def test_guard_refuses_non_public_addresses(tmp_path: Path, url: str) -> None:
    ports = make_ports(tmp_path, http_allow="")
    with pytest.raises(BadRequestError, match="refused") as caught:
        ingest(ports, {"url": url})
    assert "MLPIPE_HTTP_ALLOW" in caught.value.message


def test_guard_resolves_names_and_follows_redirects(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = urlsplit(server).port
    before = len(Handler.requests)
    monkeypatch.delenv("MLPIPE_HTTP_ALLOW", raising=False)
    closed = make_ports(tmp_path)
    # A DNS name that resolves to loopback: refused after resolution, nothing sent.
    with pytest.raises(BadRequestError, match=r"'localhost' resolves to .*loopback"):
        ingest(closed, {"url": f"http://localhost:{port}/data.csv"})
    with pytest.raises(BadRequestError, match="loopback"):
        ingest(closed, {"url": f"{server}/data.csv"})
    assert len(Handler.requests) == before  # the server never saw a request
    # "localhost" let in by name: its redirect to 127.0.0.1 (not let in) is refused, and so
    # is a redirect to the metadata address.
    by_name = make_ports(tmp_path, http_allow="localhost")
    assert ingest(by_name, {"url": f"http://localhost:{port}/data.csv"})["rows"] == 30
    for target in (f"http://127.0.0.1:{port}/data.csv", "http://169.254.169.254/"):
        with pytest.raises(BadRequestError, match="refused"):
            ingest(by_name, {"url": f"http://localhost:{port}/redirect?to={target}"})
    # A redirect between allowed addresses is followed.
    opened = make_ports(tmp_path, http_allow="127.0.0.0/8,localhost")
    hop = f"http://localhost:{port}/redirect?to=/data.csv"
    assert ingest(opened, {"url": hop})["rows"] == 30


def test_bad_http_sources_are_400s() -> None:
    from pydantic import ValidationError

    for source, message in [
        ({"url": "ftp://example.com/x.csv"}, "http:// or https://"),
        ({"url": "http://user:pw@example.com/x.csv"}, "must not carry credentials"),
        ({"url": "http://example.com/x", "headers": {"Authorization": "x"}}, "not allowed"),
        ({"url": "http://example.com/x", "pagination": {"type": "scroll"}}, "scroll"),
        ({"url": "http://example.com/x", "timeout_seconds": 0}, "greater than 0"),
    ]:
        with pytest.raises(ValidationError, match=message):
            DatasetCreate.model_validate({"name": "w", "source": {"type": "http", **source}})


def test_link_header_parsing() -> None:
    header = '<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last"'
    assert next_link(header) == "https://a/x?page=2"
    assert next_link('<https://a/1>; rel="prev first"') is None
    assert next_link('<https://a/2>; title="x"; rel=next') == "https://a/2"
    assert next_link(None) is None


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The same handler behind TLS, with a self-signed certificate for 127.0.0.1 made by
    the openssl CLI (skipped without it)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://localhost:{httpd.server_address[1]}", cert
    httpd.shutdown()
    httpd.server_close()


def test_https_verifies_the_certificate_of_the_name(
    tls_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS goes to the vetted address with the URL's host name for SNI and verification:
    an untrusted certificate is a 400; trusted (SSL_CERT_FILE), the data comes through."""
    url, cert = tls_server
    ports = make_ports(tmp_path, http_allow="localhost")
    with pytest.raises(BadRequestError, match=r"could not fetch .*CERTIFICATE_VERIFY_FAILED"):
        ingest(ports, {"url": f"{url}/data.csv"})
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert ingest(ports, {"url": f"{url}/data.csv"})["rows"] == 30
