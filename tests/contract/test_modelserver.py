"""The model server as a user meets it: a real process on loopback serving a real model
archive, spoken to over HTTP by plain clients, raw sockets, MLflow's own client and a
container's entry point."""

from __future__ import annotations

import json
import pickle
import re
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelserver
from mlcontract import scoring
from tests.contract import servekit

ROWS = 10


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> servekit.Model:
    root = tmp_path_factory.mktemp("served-model")
    return servekit.train_model(
        root,
        servekit.mixed_frame(300, seed=1),
        servekit.mixed_frame(80, seed=2),
        "random_forest",
        "classification",
        {"n_estimators": 15},
    )


@pytest.fixture(scope="module")
def fast_dir(model: servekit.Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fastpath")
    report = servekit.build_fast_path(model, out)
    assert report["runtime"] == "onnx", report
    return out


@pytest.fixture(scope="module")
def server(
    model: servekit.Model, fast_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servekit.ServerProcess]:
    """The archive, checked against its sha256, with the ONNX fast path."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    args = [str(model.archive), "--sha256", model.sha256, "--fastpath", str(fast_dir)]
    proc = servekit.start_server([*args, "--port", "0"], log)
    yield proc
    assert proc.stop() == 0, log.read_text()


@pytest.fixture(scope="module")
def vertex(
    model: servekit.Model, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servekit.ServerProcess]:
    """The model directory on scikit-learn, configured by Vertex AI's variables, with small
    limits (body, request time) to test them without big payloads or long waits."""
    log = tmp_path_factory.mktemp("logs") / "vertex.log"
    port = _free_port()
    env = servekit.isolated_env(
        AIP_HTTP_PORT=str(port),
        AIP_HEALTH_ROUTE="/v1/endpoints/42/deployedModels/7",
        AIP_PREDICT_ROUTE="/v1/endpoints/42/deployedModels/7:predict",
    )
    args = [str(model.directory), "--runtime", "sklearn", "--max-body-bytes", "4096"]
    proc = servekit.start_server([*args, "--request-timeout", "1"], log, env=env)
    assert proc.port == port
    yield proc
    assert proc.stop() == 0, log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(model: servekit.Model) -> pd.DataFrame:
    return model.test.head(ROWS)


def _records(model: servekit.Model) -> list[dict[str, Any]]:
    body = json.loads(servekit.split_body(model, _rows(model)))["dataframe_split"]
    return [dict(zip(body["columns"], row, strict=True)) for row in body["data"]]


def _payloads(model: servekit.Model) -> dict[str, Any]:
    split = json.loads(servekit.split_body(model, _rows(model)))
    names = split["dataframe_split"]["columns"]
    records = _records(model)
    return {
        "dataframe_split": split,
        "dataframe_records": {"dataframe_records": records},
        "instances (records)": {"instances": records},
        "instances (lists)": {"instances": split["dataframe_split"]["data"]},
        "inputs (columns)": {"inputs": {n: [r[n] for r in records] for n in names}},
        "inputs (records) + params": {"inputs": records, "params": {"ignored": 1}},
    }


def _error(status: int, body: bytes) -> dict[str, Any]:
    decoded = json.loads(body)
    assert set(decoded) == {"Code", "Message"}, decoded
    assert "Traceback" not in decoded["Message"]
    return dict(decoded)


# --- ping, info, formats --------------------------------------------------------------------


def test_ping_and_info(server: servekit.ServerProcess, model: servekit.Model) -> None:
    status, headers, body = server.request("GET", "/ping")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["runtime"] == "onnx"
    status, _, body = server.request("GET", "/info")
    info = json.loads(body)
    assert status == 200 and info["runtime"] == "onnx"
    assert info["model"]["signature"] == model.signature
    assert info["model"]["sha256"] == model.sha256
    assert server.ready["runtime"] == "onnx"


@pytest.mark.parametrize(
    "form",
    [
        "dataframe_split",
        "dataframe_records",
        "instances (records)",
        "instances (lists)",
        "inputs (columns)",
        "inputs (records) + params",
    ],
)
def test_every_json_form_predicts_like_the_pipeline(
    server: servekit.ServerProcess, model: servekit.Model, form: str
) -> None:
    status, body = server.invoke(json.dumps(_payloads(model)[form]))
    assert status == 200, body
    assert body == {"predictions": model.expected(_rows(model))}


def test_csv(server: servekit.ServerProcess, model: servekit.Model) -> None:
    names = [f["name"] for f in model.signature]
    frame = _rows(model)[names]
    text = frame.to_csv(index=False)  # missing values are empty cells
    status, body = server.invoke(text, "text/csv; charset=utf-8")
    assert status == 200, body
    assert body["predictions"] == model.expected(_rows(model))


def test_sklearn_runtime_answers_the_same(
    vertex: servekit.ServerProcess, server: servekit.ServerProcess, model: servekit.Model
) -> None:
    payload = json.dumps(_payloads(model)["dataframe_records"])
    assert json.loads(vertex.request("GET", "/info")[2])["runtime"] == "sklearn"
    assert vertex.invoke(payload) == server.invoke(payload)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"dataframe_records": [{"x 1": 1}]}', "application/json", 400, "missing column"),
        (
            b'{"instances": [{"x 1": "high", "x/2": 1, "count": 1, "flag": true, "colour": "red",'
            b' "city": "Oslo"}]}',
            "application/json",
            400,
            "'x 1' expects a number",
        ),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"inputs": [], "instances": []}', "application/json", 400, "exactly one of"),
        (b"\xff\xfe", "application/json", 400, "UTF-8"),
        (b"a,b\n1,2\n", "text/csv", 400, "missing column"),
        (b"x", "text/plain", 415, "text/plain"),
        (b"x", "application/x-www-form-urlencoded", 415, "not supported"),
    ],
)
def test_bad_input_is_a_json_4xx(
    server: servekit.ServerProcess, body: bytes, content_type: str, status: int, words: str
) -> None:
    got, headers, payload = server.request(
        "POST", "/invocations", body, {"Content-Type": content_type}
    )
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert words in _error(got, payload)["Message"]


def test_gzip_body_and_unacceptable_accept(server: servekit.ServerProcess) -> None:
    status, _, body = server.request(
        "POST",
        "/invocations",
        b"x",
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 415 and "gzip" in _error(status, body)["Message"]
    status, _, body = server.request(
        "POST", "/invocations", b"{}", {"Content-Type": "application/json", "Accept": "text/csv"}
    )
    assert status == 406 and _error(status, body)["Code"] == "NotAcceptableError"


def test_routes_and_methods(server: servekit.ServerProcess) -> None:
    status, _, body = server.request("GET", "/nope")
    assert status == 404 and _error(status, body)["Code"] == "NotFoundError"
    status, _, body = server.request("GET", "/invocations")
    assert status == 405 and _error(status, body)["Code"] == "MethodNotAllowedError"
    status, _, body = server.request("HEAD", "/ping")
    assert status == 200 and body == b""


# --- HTTP envelope --------------------------------------------------------------------------


def _raw(server: servekit.ServerProcess, data: bytes, timeout: float = 20.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in a byte stream (Content-Length framed)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        if status == 100:
            raw = rest
            continue
        out.append((status, rest[:length]))
        raw = rest[length:]
    return out


def _post(body: bytes, extra: str = "", close: bool = False) -> bytes:
    head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n{extra}"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def test_keep_alive_reuses_one_connection(
    server: servekit.ServerProcess, model: servekit.Model
) -> None:
    conn = server.connection()
    payload = json.dumps(_payloads(model)["dataframe_split"])
    ports = set()
    for _ in range(5):
        conn.request("POST", "/invocations", payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") is None
        response.read()
        ports.add(conn.sock.getsockname()[1])
    conn.close()
    assert len(ports) == 1
    info = json.loads(server.request("GET", "/info")[2])
    assert info["requests"] >= 5


def test_pipelined_requests_are_answered_in_order(
    server: servekit.ServerProcess, model: servekit.Model
) -> None:
    first = json.dumps({"dataframe_records": _records(model)[:1]}).encode()
    second = json.dumps({"dataframe_records": _records(model)[1:3]}).encode()
    bad = b'{"dataframe_records": [{"x 1": 1}]}'
    raw = _raw(server, _post(first) + _post(bad) + _post(second, close=True))
    answers = _responses(raw)
    expected = model.expected(_rows(model))
    assert [status for status, _ in answers] == [200, 400, 200]
    assert json.loads(answers[0][1])["predictions"] == expected[:1]
    assert json.loads(answers[2][1])["predictions"] == expected[1:3]


def test_chunked_body(server: servekit.ServerProcess, model: servekit.Model) -> None:
    body = json.dumps({"instances": _records(model)}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ((status, payload),) = _responses(_raw(server, head + chunks + b"0\r\n\r\n"))
    assert status == 200
    assert json.loads(payload)["predictions"] == model.expected(_rows(model))


def test_post_without_length_is_411(server: servekit.ServerProcess) -> None:
    raw = _raw(
        server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
    )
    ((status, body),) = _responses(raw)
    assert status == 411 and _error(status, body)["Code"] == "LengthRequiredError"


def test_expect_continue(server: servekit.ServerProcess, model: servekit.Model) -> None:
    body = json.dumps({"instances": _records(model)[:2]}).encode()
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(
            _post(body, "Expect: 100-continue\r\n", close=True).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert _responses(raw)[0][0] == 200


def test_too_large_body_is_413_before_it_is_sent(vertex: servekit.ServerProcess) -> None:
    # Only the headers: the server must answer without waiting for 10 MB it will not read.
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    ((status, body),) = _responses(_raw(vertex, head + b"Content-Length: 10000000\r\n\r\n"))
    assert status == 413 and _error(status, body)["Code"] == "PayloadTooLargeError"


def test_too_large_chunked_body_is_413(vertex: servekit.ServerProcess) -> None:
    part = b"x" * 3000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for _ in range(3))
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    ((status, _),) = _responses(_raw(vertex, head + chunks))
    assert status == 413


def test_huge_headers_are_431(server: servekit.ServerProcess) -> None:
    raw = _raw(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    ((status, _),) = _responses(raw)
    assert status == 431


def test_malformed_http_is_400(server: servekit.ServerProcess) -> None:
    ((status, body),) = _responses(_raw(server, b"HELLO\r\n\r\n"))
    assert status == 400 and "malformed" in _error(status, body)["Message"]


def test_slow_request_is_cut_off_with_408(vertex: servekit.ServerProcess) -> None:
    # Headers sent, body never finished: the server (1 s request timeout) answers and closes.
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    ((status, body),) = _responses(_raw(vertex, head, timeout=30))
    assert status == 408 and _error(status, body)["Code"] == "RequestTimeoutError"


def test_http_1_0_closes_unless_kept_alive(server: servekit.ServerProcess) -> None:
    raw = _raw(server, b"GET /ping HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in raw and _responses(raw)[0][0] == 200


# --- Vertex AI ------------------------------------------------------------------------------


def test_vertex_routes(vertex: servekit.ServerProcess, model: servekit.Model) -> None:
    status, _, _ = vertex.request("GET", "/v1/endpoints/42/deployedModels/7")
    assert status == 200
    body = json.dumps({"instances": _records(model), "parameters": {"confidence": 0.5}})
    status, answer = vertex.invoke(body, path="/v1/endpoints/42/deployedModels/7:predict")
    assert status == 200
    assert answer == {"predictions": model.expected(_rows(model))}
    # SageMaker's routes are served too: one artefact for every platform.
    assert vertex.request("GET", "/ping")[0] == 200


# --- MLflow's own client and payloads -------------------------------------------------------


def _user_frame(model: servekit.Model) -> pd.DataFrame:
    """The rows as a user's DataFrame: NaN for missing numbers, None in text, real booleans."""
    frame = _rows(model)[[f["name"] for f in model.signature]].reset_index(drop=True)
    assert frame["flag"].dtype == bool
    return frame


def test_mlflow_scoring_server_client(
    server: servekit.ServerProcess, model: servekit.Model
) -> None:
    client_module = pytest.importorskip(
        "mlflow.pyfunc.scoring_server.client",
        reason="mlflow-skinny (dev extra) provides MLflow's ScoringServerClient",
    )
    client = client_module.ScoringServerClient(server.host, server.port)
    client.ping()
    client.wait_server_ready(timeout=5)
    frame = _user_frame(model)
    assert frame.isna().any().any()
    response = client.invoke(frame)
    assert list(response["predictions"]) == model.expected(_rows(model))
    assert "mlpipe" in client.get_version()


def test_mlflow_payload_helpers(server: servekit.ServerProcess, model: servekit.Model) -> None:
    client_module = pytest.importorskip("mlflow.pyfunc.scoring_server.client")
    utils = pytest.importorskip("mlflow.models.utils")
    frame = _user_frame(model)
    expected = model.expected(_rows(model))
    bodies = [
        client_module.dump_input_data(frame),  # dataframe_split, with NaN tokens
        client_module.dump_input_data(frame, params={"k": 1}),
        utils.convert_input_example_to_serving_input(frame),
    ]
    assert "NaN" in bodies[0]
    for body in bodies:
        status, answer = server.invoke(body)
        assert status == 200, answer
        assert answer["predictions"] == expected


# --- model loading, sha256, the unpacked archive and the container ---------------------------


def test_sha256_mismatch_loads_nothing(tmp_path: Path, model: servekit.Model) -> None:
    # A model.joblib that would leave a mark if it were ever unpickled.
    mark = tmp_path / "unpickled"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "metadata.json").write_text((model.directory / "metadata.json").read_text())
    (evil / "model.joblib").write_bytes(pickle.dumps(_Touch(str(mark))))
    archive = servekit.pack(evil, tmp_path / "packed")
    result = subprocess.run(
        [
            sys.executable,
            str(servekit.SERVER),
            "serve",
            str(archive),
            "--sha256",
            "0" * 64,
            "--port",
            "0",
        ],
        env=servekit.isolated_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "expected 0000" in result.stderr and "refusing to load it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not mark.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def test_serves_from_an_unpacked_archive(tmp_path: Path, model: servekit.Model) -> None:
    with tarfile.open(model.archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked"
    # `python code/modelserver.py serve .` with nothing but the archive's own code.
    proc = servekit.start_server(
        [".", "--port", "0"], tmp_path / "log", cwd=unpacked, script=Path("code/modelserver.py")
    )
    try:
        status, answer = proc.invoke(json.dumps({"dataframe_records": _records(model)}))
        assert status == 200 and answer["predictions"] == model.expected(_rows(model))
        assert proc.ready["runtime"] == "sklearn"  # no fast path in the archive
    finally:
        assert proc.stop() == 0


def _dockerfile_command(dockerfile: str) -> list[str]:
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    return [*entry, *cmd]


def test_build_context_runs_what_its_dockerfile_says(
    tmp_path: Path, model: servekit.Model, fast_dir: Path
) -> None:
    out = tmp_path / "context"
    assert (
        modelserver.main(
            [
                "build-context",
                str(model.archive),
                str(out),
                "--sha256",
                model.sha256,
                "--fastpath",
                str(fast_dir),
            ]
        )
        == 0
    )
    dockerfile = (out / "Dockerfile").read_text()

    # Every COPY source exists in the context.
    for source, target in re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.M):
        assert (out / source).exists(), source
        assert target.startswith("/opt/ml/")
    for name in (
        "model.joblib",
        "metadata.json",
        "code/modelserver.py",
        "code/inference.py",
        "code/fastpath.py",
        "code/mlcontract/scoring.py",
        "fastpath/model.onnx",
    ):
        assert (out / "model" / name).is_file(), name

    # The pins are the versions metadata.json records (and this environment's for the rest).
    pins = dict(
        line.split("  #")[0].split(";")[0].strip().split("==")
        for line in (out / "requirements.txt").read_text().splitlines()
        if "==" in line
    )
    assert pins["scikit-learn"] == model.metadata["sklearn_version"]
    assert pins["pandas"] == model.metadata["pandas_version"]
    from importlib.metadata import version

    for name in ("numpy", "joblib", "httptools", "onnxruntime", "uvloop"):
        assert pins[name] == version(name), name
    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.M)

    # The image's command, with /opt/ml/model mapped into the context, serves on the port
    # SageMaker gives it, from the code inside the context only.
    command = _dockerfile_command(dockerfile)
    assert command[0] == "python" and command[2:] == ["serve", "/opt/ml/model"]
    local = [
        str(out / "model" / Path(arg).relative_to("/opt/ml/model"))
        if arg.startswith("/opt/ml/model")
        else arg
        for arg in command[1:]
    ]
    env = servekit.isolated_env(
        SAGEMAKER_BIND_TO_PORT=str(_free_port()), MLPIPE_SERVER_HOST="127.0.0.1"
    )
    proc = servekit.start_server(local[2:], tmp_path / "log", env=env, script=Path(local[0]))
    try:
        assert proc.port == int(env["SAGEMAKER_BIND_TO_PORT"])
        assert proc.ready["runtime"] == "onnx"
        status, answer = proc.invoke(json.dumps({"instances": _records(model)}))
        assert status == 200 and answer["predictions"] == model.expected(_rows(model))
    finally:
        assert proc.stop() == 0


# --- in-process: the request hook ------------------------------------------------------------


def test_request_hook_sees_every_invocation(
    model: servekit.Model, fast_dir: Path, tmp_path: Path
) -> None:
    served = modelserver.load_model(
        model.archive, workdir=tmp_path, sha256=model.sha256, fastpath_dir=fast_dir
    )
    seen: list[tuple[str, int, int, int]] = []
    app = modelserver.ModelApp(served, variant="canary", hook=lambda *a: seen.append(a))
    good = json.dumps({"dataframe_records": _records(model)}).encode()
    status, body, _ = app.handle(b"POST", "/invocations", b"application/json", None, None, good)
    assert status == 200 and json.loads(body)["predictions"] == model.expected(_rows(model))
    app.handle(b"POST", "/invocations", b"application/json", None, None, b"{}")
    app.handle(b"GET", "/ping", None, None, None, b"")  # not an invocation
    app.rejected("/invocations", 413)
    assert [(v, s) for v, s, _, _ in seen] == [("canary", 200), ("canary", 400), ("canary", 413)]
    _, status, model_us, overhead_us = seen[0]
    assert model_us > 0 and overhead_us > 0
    assert seen[1][2] == 0  # a refused body never reaches the model

    def broken(*args: Any) -> None:
        raise RuntimeError("metrics backend down")

    app.hook = broken
    status, _, _ = app.handle(b"POST", "/invocations", b"application/json", None, None, good)
    assert status == 200 and app.hook is None  # a failing hook is dropped, the answer stands


def test_marker_text_is_served_by_sklearn(
    model: servekit.Model, fast_dir: Path, tmp_path: Path
) -> None:
    import fastpath

    served = modelserver.load_model(model.archive, workdir=tmp_path, fastpath_dir=fast_dir)
    assert served.runtime == "onnx"
    record = _records(model)[0] | {"colour": fastpath.MISSING_TEXT}
    batch = scoring.parse(json.dumps({"instances": [record]}), scoring.JSON, model.signature)
    frame = pd.DataFrame([record]).astype(object).fillna(np.nan)
    assert served.predict(batch) == model.expected(frame)


def test_directory_with_sha256_is_refused(model: servekit.Model, tmp_path: Path) -> None:
    with pytest.raises(modelserver.ModelLoadError, match=r"verifies a model\.tar\.gz"):
        modelserver.load_model(model.directory, workdir=tmp_path, sha256=model.sha256)


def test_port_and_routes_from_the_platform() -> None:
    assert modelserver.resolve_port(None, {}) == 8080
    assert modelserver.resolve_port(None, {"SAGEMAKER_BIND_TO_PORT": "9001"}) == 9001
    assert modelserver.resolve_port(None, {"AIP_HTTP_PORT": "9002"}) == 9002
    assert modelserver.resolve_port(7, {"AIP_HTTP_PORT": "9002"}) == 7
    health, predict = modelserver.routes_from_env(
        {"AIP_PREDICT_ROUTE": "/p", "AIP_HEALTH_ROUTE": "/h"}
    )
    assert "/ping" in health and "/h" in health and predict == ["/invocations", "/p"]
