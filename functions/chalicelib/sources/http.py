"""``http`` sources: CSV, JSON, JSON Lines or Parquet over HTTP(S), with pagination.

An SSRF guard sits under every request: the host is resolved once, every address it
resolves to must be public (not loopback, private, link-local — the cloud metadata service
at 169.254.169.254 among them —, shared, reserved or multicast), and the connection goes to
that vetted address (no second lookup a DNS rebind could change). Redirects are followed by
hand, each hop checked the same way. ``MLPIPE_HTTP_ALLOW`` (hosts or CIDRs, comma-separated)
lets named hosts or networks in.
"""

from __future__ import annotations

import gzip
import http.client
import io
import ipaddress
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from chalicelib.errors import BadRequestError, PayloadTooLargeError
from chalicelib.settings import Settings
from chalicelib.sources.models import (
    HttpSource,
    LinkHeaderPagination,
    NextFieldPagination,
    PagePagination,
)

MAX_REDIRECTS = 5
USER_AGENT = "mlpipe-ingest/1"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allow:
    hosts: frozenset[str]
    networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> Allow:
        hosts: set[str] = set()
        networks: list[IpNetwork] = []
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def admits(self, host: str, address: IpAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(
            address in net for net in self.networks
        )


def _refused(address: IpAddress) -> str | None:
    """Why an address is not a public one, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def vet(host: str, port: int, allow: Allow) -> IpAddress:
    """Resolve ``host`` and return the address to connect to, or a 400 if any address it
    resolves to is not public (and not allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadRequestError(f"source.url: host {host!r} does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise BadRequestError(f"source.url: host {host!r} does not resolve")
    for address in addresses:
        reason = _refused(address)
        if reason and not allow.admits(host, address):
            raise BadRequestError(
                f"source.url: host {host!r} resolves to {address}, {reason}; refused "
                "(MLPIPE_HTTP_ALLOW lists hosts or networks to let in)"
            )
    return addresses[0]


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = str(address)

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _TlsConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = str(address)

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Page:
    url: str
    body: bytes
    headers: http.client.HTTPMessage


class Fetcher:
    """GETs with the guard, redirects by hand, a per-request timeout and a byte budget
    shared by every page."""

    def __init__(self, settings: Settings, source: HttpSource) -> None:
        self.allow = Allow.parse(settings.http_allow)
        self.source = source
        self.budget = settings.http_max_bytes
        self.used = 0

    def get(self, url: str) -> Page:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadRequestError(f"source.url: {parts.scheme!r} URLs are not fetched")
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = vet(host, port, self.allow)
            kind = _TlsConnection if parts.scheme == "https" else _Connection
            conn = kind(host, port, address, self.source.timeout_seconds)
            path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            try:
                conn.request(
                    "GET",
                    path,
                    headers={
                        "User-Agent": USER_AGENT,
                        "Accept-Encoding": "gzip",
                        **self.source.headers,
                    },
                )
                resp = conn.getresponse()
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.getheader("Location")
                    resp.close()
                    if not location:
                        raise BadRequestError(f"{_safe(url)} redirected without a Location")
                    url = urljoin(url, location)
                    continue
                if resp.status >= 400:
                    raise BadRequestError(f"{_safe(url)} answered HTTP {resp.status}")
                body = self._read(resp, url)
                if (resp.getheader("Content-Encoding") or "").lower() == "gzip":
                    body = self._gunzip(body, url)
                return Page(url, body, resp.headers)
            except TimeoutError:
                raise BadRequestError(
                    f"{_safe(url)} did not answer within {self.source.timeout_seconds:g} s"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise BadRequestError(f"could not fetch {_safe(url)}: {exc}") from None
            finally:
                conn.close()
        raise BadRequestError(f"source.url: more than {MAX_REDIRECTS} redirects")

    def _read(self, resp: http.client.HTTPResponse, url: str) -> bytes:
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and self.used + int(declared) > self.budget:
            raise self._too_large()
        chunks: list[bytes] = []
        deadline = time.monotonic() + max(self.source.timeout_seconds * 10, 60)
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            self.used += len(chunk)
            if self.used > self.budget:
                raise self._too_large()
            if time.monotonic() > deadline:
                raise BadRequestError(f"{_safe(url)} is too slow to download")
            chunks.append(chunk)
        return b"".join(chunks)

    def _gunzip(self, body: bytes, url: str) -> bytes:
        out = gzip.GzipFile(fileobj=io.BytesIO(body))
        try:
            data = out.read(self.budget - self.used + 1)
        except (OSError, EOFError):
            raise BadRequestError(f"{_safe(url)} sent a broken gzip body") from None
        if self.used + len(data) > self.budget:
            raise self._too_large()
        return data

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the HTTP source is larger than {self.budget} bytes (MLPIPE_HTTP_MAX_BYTES)"
        )


def _safe(url: str) -> str:
    """A URL for messages: without its query string (which may hold tokens)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _dig(doc: Any, path: str, what: str) -> Any:
    for key in path.split("."):
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            raise BadRequestError(f"{what} {path!r} is not in the JSON response")
    return doc


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def next_link(header: str | None) -> str | None:
    """The rel="next" target of an RFC 8288 Link header."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2)
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return match.group(1)
    return None


def read(settings: Settings, source: HttpSource, fmt: str) -> tuple[bytes, dict[str, Any]]:
    """The source's bytes in ``fmt`` (pages of JSON records are merged into one JSON array)
    and the lineage (URLs without query strings)."""
    fetcher = Fetcher(settings, source)
    lineage: dict[str, Any] = {"type": "http", "url": _safe(source.url), "format": fmt}
    if source.records_path and fmt != "json":
        raise BadRequestError('records_path applies to "format": "json" only')
    if source.pagination is None:
        page = fetcher.get(source.url)
        if fmt == "json" and source.records_path:
            found = _records(page.body, source.records_path)
            return json.dumps(found).encode(), {**lineage, "pages": 1}
        return page.body, {**lineage, "pages": 1}
    if fmt not in ("json", "jsonl"):
        raise BadRequestError("pagination applies to json and jsonl sources")
    pagination = source.pagination
    records: list[Any] = []
    url: str | None = source.url
    number = pagination.start if isinstance(pagination, PagePagination) else 0
    if isinstance(pagination, PagePagination):
        url = _with_param(source.url, pagination.param, number)
    pages = 0
    seen: set[str] = set()
    while url is not None:
        if pages >= source.max_pages:
            raise BadRequestError(
                f"the source has more than max_pages={source.max_pages} pages; raise max_pages"
            )
        if url in seen:
            raise BadRequestError(f"pagination loops back to {_safe(url)}")
        seen.add(url)
        page = fetcher.get(url)
        pages += 1
        doc: Any = None
        if fmt == "json":
            doc = _json(page.body)
            batch = _dig(doc, source.records_path, "records_path") if source.records_path else doc
            if not isinstance(batch, list):
                raise BadRequestError(f"page {pages} of the source is not a JSON array of records")
        else:
            batch = [_json(line) for line in page.body.splitlines() if line.strip()]
        records.extend(batch)
        if isinstance(pagination, LinkHeaderPagination):
            target = next_link(page.headers.get("Link"))
            url = urljoin(page.url, target) if target else None
        elif isinstance(pagination, NextFieldPagination):
            if doc is None:
                raise BadRequestError("next_field pagination needs JSON pages")
            try:
                target = _dig(doc, pagination.path, "pagination.path")
            except BadRequestError:
                target = None  # the last page often leaves the field out
            if target is not None and not isinstance(target, str):
                raise BadRequestError(f"pagination.path {pagination.path!r} is not a URL")
            url = urljoin(page.url, target) if target else None
        else:
            assert isinstance(pagination, PagePagination)
            number += 1
            url = _with_param(source.url, pagination.param, number) if batch else None
    return json.dumps(records).encode(), {**lineage, "pages": pages}


def _records(body: bytes, path: str) -> Any:
    batch = _dig(_json(body), path, "records_path")
    if not isinstance(batch, list):
        raise BadRequestError(f"records_path {path!r} is not an array")
    return batch


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"the HTTP source sent malformed JSON: {str(exc)[:200]}") from None


def _with_param(url: str, param: str, value: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param]
    query.append((param, str(value)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
