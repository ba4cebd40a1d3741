"""The monitoring dashboard in a real headless Chromium.

A loopback HTTP server serves ``/dashboard`` (the page rendered by
``chalicelib.monitoring.dashboards.html_page``) and the JSON routes it fetches, answered by
the real monitoring code over a real local metrics store filled with three hours of known
traffic (plus a drift report from ``driftstats`` on shifted traffic, alarms evaluated by the
alarm evaluator, and fixed performance and run documents). Chromium (Debian's package,
driven through chromedriver by Selenium) loads the page; the test reads the numbers from the
DOM and keeps a screenshot in ``test-artifacts/`` (git-ignored) and the pytest tmp dir.

Skipped when chromium or chromedriver is missing, except under ``CI=true`` where that is a
failure (``.ci/run`` installs them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import driftstats
from chalicelib.errors import MLPipeError
from chalicelib.monitoring import alarms, dashboards, service
from iac.local.metrics_store import SqliteMetricsStore
from mlcontract import monitoring as mon
from tests.monitoring_helpers import TYPES, baseline_of, traffic

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MINUTES = range(5, 171)  # well inside the page's default 3-hour window
PER_MINUTE = 120


def _need_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    message = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def fill(store: SqliteMetricsStore, now: dt.datetime) -> None:
    points = []
    for m in MINUTES:
        when = now - dt.timedelta(minutes=m)
        dims = {mon.ENDPOINT: "flowers"}
        points += [
            mon.datum(mon.INVOCATIONS, dims, when, value=PER_MINUTE),
            mon.datum(mon.ERRORS_4XX, dims, when, value=1),
            mon.datum(mon.ERRORS_5XX, dims, when, value=2),
            mon.datum(mon.CPU, dims, when, value=35 + (m % 20)),
            mon.datum(mon.MEMORY, dims, when, value=12.5),
        ]
        slow = 48_000 if m < 60 else 30_000
        lat = [900 + 10 * (i % 50) for i in range(118)] + [slow, slow]
        points.append(
            mon.datum(
                mon.MODEL_LATENCY, dims, when, buckets=mon.histogram(lat), total=float(sum(lat))
            )
        )
        points.append(
            mon.datum(
                mon.OVERHEAD_LATENCY, dims, when, buckets=mon.histogram([120] * 110 + [400] * 10)
            )
        )
    pipe = {mon.PIPELINE: "flowers-rf"}
    for m in (20, 80, 140):
        when = now - dt.timedelta(minutes=m)
        points += [
            mon.datum(mon.RUNS_SUCCEEDED if m != 80 else mon.RUNS_FAILED, pipe, when, value=1),
            mon.datum(mon.STEP_DURATION, {**pipe, mon.STEP: "Train"}, when, value=6 + m / 100),
            mon.datum(mon.STEP_DURATION, {**pipe, mon.STEP: "Ingest"}, when, value=1.2),
        ]
    store.put("mlpipe", points)


def runs(now: dt.datetime) -> list[dict[str, Any]]:
    out = []
    for i, (m, status) in enumerate([(20, "SUCCEEDED"), (80, "FAILED"), (140, "SUCCEEDED")]):
        t0 = now - dt.timedelta(minutes=m)
        steps, t = [], t0
        for name, secs in [
            ("Ingest", 1.2),
            ("Validate", 0.4),
            ("Split", 0.5),
            ("Train", 6.0),
            ("Evaluate", 2.0),
            ("Deploy", 0.8),
        ]:
            if status == "FAILED" and name == "Evaluate":
                steps.append(
                    {
                        "name": name,
                        "status": "FAILED",
                        "started_at": mon.iso(t),
                        "ended_at": mon.iso(t + dt.timedelta(seconds=secs)),
                    }
                )
                t += dt.timedelta(seconds=secs)
                break
            steps.append(
                {
                    "name": name,
                    "status": "SUCCEEDED",
                    "started_at": mon.iso(t),
                    "ended_at": mon.iso(t + dt.timedelta(seconds=secs)),
                }
            )
            t += dt.timedelta(seconds=secs)
        out.append(
            {
                "run_id": f"run-{i}",
                "pipeline": "flowers-rf",
                "status": status,
                "created_at": mon.iso(t0),
                "ended_at": mon.iso(t),
                "steps": steps,
            }
        )
    return out


class Api:
    """The routes the page calls, answered by the monitoring code."""

    def __init__(self, store: SqliteMetricsStore, now: dt.datetime) -> None:
        self.store = store
        report = driftstats.check_drift(
            baseline_of(traffic(4000, seed=1), TYPES), traffic(3000, seed=2, shift=True)
        )
        report["checked_at"] = mon.iso(now - dt.timedelta(minutes=3))
        self.drift = report
        self.runs = runs(now)
        rate = alarms.endpoint_presets("flowers", p99_ms=40)
        self.alarms = [
            {"definition": d.model_dump(), "state": r.state, "last": r.model_dump()}
            for d in rate
            for r in [alarms.evaluate(store, d, now - dt.timedelta(minutes=10))]
        ]
        self.performance = {
            "endpoint": "flowers",
            "task": "classification",
            "period": 3600,
            "windows": [
                {
                    "start": mon.iso(
                        (now - dt.timedelta(hours=h)).replace(minute=0, second=0, microsecond=0)
                    ),
                    "labelled_rows": 400,
                    "accuracy": a,
                    "f1_macro": a - 0.03,
                }
                for h, a in [(2, 0.95), (1, 0.93), (0, 0.88)]
            ],
            "overall": {"labelled_rows": 1200, "accuracy": 0.92, "f1_macro": 0.89},
        }

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/endpoints":
            return 200, {
                "endpoints": [
                    {
                        "name": "flowers",
                        "model": "flowers-rf",
                        "model_version": 3,
                        "status": "InService",
                        "runtime": "onnx",
                    }
                ]
            }
        if path == "/pipelines":
            return 200, {"pipelines": [{"name": "flowers-rf"}]}
        if path == "/endpoints/flowers/metrics":
            return 200, service.endpoint_metrics(
                self.store, "flowers", service.MetricsParams.parse(query)
            )
        if path == "/pipelines/flowers-rf/metrics":
            return 200, service.pipeline_metrics(
                self.store, "flowers-rf", service.MetricsParams.parse(query)
            )
        if path == "/endpoints/flowers/drift":
            return 200, self.drift
        if path == "/endpoints/flowers/performance":
            return 200, self.performance
        if path == "/endpoints/flowers/alarms":
            return 200, {"alarms": self.alarms}
        if path == "/pipelines/flowers-rf/runs":
            return 200, {
                "runs": [
                    {k: r[k] for k in ("run_id", "status", "created_at", "ended_at")}
                    for r in self.runs
                ]
            }
        if path.startswith("/runs/"):
            found = [r for r in self.runs if r["run_id"] == path.removeprefix("/runs/")]
            return (
                (200, found[0]) if found else (404, {"Code": "NotFoundError", "Message": "no run"})
            )
        return 404, {"Code": "NotFoundError", "Message": f"no route {path}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Api]]:
    now = dt.datetime.now(dt.UTC)
    store = SqliteMetricsStore(tmp_path / "metrics.sqlite3")
    fill(store, now)
    api = Api(store, now)
    page = dashboards.html_page().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/dashboard":
                status, body, ctype = 200, page, "text/html; charset=utf-8"
            else:
                try:
                    status, doc = api.route(url.path, dict(parse_qsl(url.query)))
                except MLPipeError as exc:
                    status, doc = exc.status_code, {"Code": exc.code, "Message": exc.message}
                body, ctype = json.dumps(doc).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", api
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,2200",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium and chromedriver


def wait_ready(driver: Any) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("ready", "error")
    )
    return str(driver.execute_script("return document.body.dataset.state"))


def kpi(driver: Any, key: str) -> str:
    return str(
        driver.execute_script(
            f"return document.querySelector('[data-kpi=\"{key}\"] .value').textContent"
        )
    )


def keep(driver: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    artefacts = REPO / "test-artifacts"
    artefacts.mkdir(exist_ok=True)
    shutil.copyfile(shot, artefacts / name)
    return shot


def test_dashboard_shows_the_endpoint_and_pipeline_numbers(server, browser, tmp_path: Path) -> None:
    url, api = server
    browser.get(f"{url}/dashboard")
    assert wait_ready(browser) == "ready", browser.find_element("id", "error").text
    total = PER_MINUTE * len(MINUTES)
    assert kpi(browser, "requests") == f"{total / 1000:.1f}k"  # 19,920 requests
    assert kpi(browser, "error-rate") == f"{3 * len(MINUTES) / total * 100:.2f}%"
    assert kpi(browser, "p99").endswith("ms")
    drifted = sorted(f["name"] for f in api.drift["features"] if f["drifted"])
    assert kpi(browser, "drift") == f"{len(drifted)}/{len(api.drift['features'])}"
    assert kpi(browser, "quality") == "0.92"
    shown_drifted = browser.execute_script(
        "return [...document.querySelectorAll('[data-widget=drift] g.feature[data-drifted=true]')].map(g => g.dataset.feature).sort()"
    )
    assert shown_drifted == drifted and "x3" in drifted
    lines = browser.execute_script(
        "return [...document.querySelectorAll('[data-widget=latency] path.series')].map(p => p.dataset.label)"
    )
    assert lines == ["p50", "p90", "p99"]
    assert browser.execute_script(
        "return document.querySelectorAll('[data-widget=errors] rect').length"
    ) >= len(MINUTES)
    states = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-alarm]')].map(b => [b.dataset.alarm, b.textContent]))"
    )
    # Evaluated 10 minutes ago: p99 was 48 ms (> 40) for 3 minutes; 5xx 1.7 % (< 5 %).
    assert states["flowers-p99-latency"].endswith(": ALARM")
    assert states["flowers-5xx-rate"].endswith(": OK")
    shot = keep(browser, tmp_path, "dashboard-endpoint.png")
    assert shot.stat().st_size > 20_000

    browser.get(f"{url}/dashboard#pipeline=flowers-rf")
    browser.refresh()
    assert wait_ready(browser) == "ready"
    assert kpi(browser, "runs") == "3"
    assert kpi(browser, "success") == "67%"
    rows = browser.execute_script(
        "return [...document.querySelectorAll('[data-widget=recent] tr')].map(r => r.dataset.run)"
    )
    assert rows == ["run-0", "run-1", "run-2"]
    steps = browser.execute_script(
        "return [...document.querySelectorAll('[data-widget=steps] path.series')].map(p => p.dataset.label).sort()"
    )
    assert steps == ["Ingest", "Train"]
    keep(browser, tmp_path, "dashboard-pipeline.png")
