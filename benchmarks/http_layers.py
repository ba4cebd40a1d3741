"""Benchmark: which HTTP layer the model server should use (the model is left out).

Each candidate server answers ``POST /invocations`` with a fixed small JSON body, so what is
measured is the HTTP layer alone: accept, parse, respond, keep-alive. Every candidate runs in
its own process (one core for the server, one for the clients on a 2-core machine); clients
are keep-alive ``http.client.HTTPConnection`` s.

    PYTHONPATH=.:functions:sagemaker_jobs .venv/bin/python benchmarks/http_layers.py
    ... --requests 3000 --seconds 3 --only modelserver,uvicorn

Candidates:

- ``stdlib-threads``: ``http.server.ThreadingHTTPServer`` (HTTP/1.1), what a zero-dependency
  server would be;
- ``uvicorn``: uvicorn + uvloop + httptools with a bare ASGI app (no framework);
- ``asyncio-httptools``: an ``asyncio.Protocol`` feeding httptools' parser, default loop;
- ``uvloop-httptools``: the same on uvloop;
- ``modelserver``: ``sagemaker_jobs/modelserver.py``'s real HTTP layer with a constant
  predictor (what was picked, with its limits, timeouts and error handling in place).

It prints p50/p95/p99 single-client latency and 4-client throughput; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BODY = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}})
ANSWER = b'{"predictions":[1]}'
CANDIDATES = ("stdlib-threads", "uvicorn", "asyncio-httptools", "uvloop-httptools", "modelserver")


# --- candidate servers (run with --serve NAME --port N) -------------------------------------


def serve_stdlib(port: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def serve_uvicorn(port: int) -> None:
    import uvicorn

    uvicorn.run(
        asgi_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


class HttptoolsProtocol(asyncio.Protocol):
    """The minimum a raw protocol does: parse, answer in order, keep-alive."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(ANSWER), ANSWER)
        )


def serve_httptools(port: int, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.install()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(HttptoolsProtocol, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


def serve_modelserver(port: int) -> None:
    sys.path.insert(0, str(REPO / "sagemaker_jobs"))
    import modelserver

    class Constant:
        def handle(self, method, path, content_type, accept, encoding, body):
            return 200, ANSWER, b"application/json"

        def rejected(self, path, status):
            pass

    modelserver.serve_forever(Constant(), modelserver.HttpConfig(port=port))


# --- clients --------------------------------------------------------------------------------


def _request(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/invocations", BODY, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {data[:200]!r}")


def latency(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(200):
        _request(conn)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        _request(conn)
        samples.append((time.perf_counter() - t0) * 1e3)
    conn.close()
    return samples


def _client_loop(port: int, seconds: float, out: multiprocessing.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    _request(conn)
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        _request(conn)
        count += 1
    out.put(count)


def throughput(port: int, clients: int, seconds: float) -> float:
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_client_loop, args=(port, seconds, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            _request(conn)
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=CANDIDATES)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--only", default=",".join(CANDIDATES))
    args = parser.parse_args()
    if args.serve:
        {
            "stdlib-threads": serve_stdlib,
            "uvicorn": serve_uvicorn,
            "asyncio-httptools": lambda p: serve_httptools(p, False),
            "uvloop-httptools": lambda p: serve_httptools(p, True),
            "modelserver": serve_modelserver,
        }[args.serve](args.port)
        return 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sagemaker_jobs")])}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(
        f"{'candidate':<20} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s x1':>9} "
        f"{'req/s x' + str(args.clients):>9}"
    )
    for name in args.only.split(","):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", name, "--port", str(port)], env=env
        )
        try:
            wait_ready(port, proc)
            samples = latency(port, args.requests)
            rps = throughput(port, args.clients, args.seconds)
            p50 = statistics.median(samples)
            print(
                f"{name:<20} {p50:8.3f} {pct(samples, 0.95):8.3f} {pct(samples, 0.99):8.3f} "
                f"{1e3 / statistics.mean(samples):9.0f} {rps:9.0f}",
                flush=True,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
