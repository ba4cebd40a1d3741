"""The local metrics store: SQLite in the data directory, CloudWatch's semantics.

Data points are merged into 10-second buckets per metric (namespace, name, exact dimension
set): count, exact sum, minimum, maximum and the log-linear histogram
(``mlcontract.monitoring``), so any statistic over any period — percentiles included — is
computed from merged buckets, never as an average of percentiles. One file
(``$MLPIPE_DATA_DIR/metrics.sqlite3``), WAL, so the API reads while the stack writes and
nothing is lost on restart. ``prune(older_than)`` drops old buckets (the stack calls it).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.monitoring.store import (
    RESOLUTION_SECONDS,
    Aggregate,
    Datum,
    MetricQuery,
    check_points,
    check_window,
    dims_key,
)
from mlcontract import monitoring as mon


def _bucket_start(ts: float, width: int) -> int:
    return int(math.floor(ts / width) * width)


class SqliteMetricsStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY, namespace TEXT NOT "
                "NULL, name TEXT NOT NULL, dims TEXT NOT NULL, unit TEXT NOT NULL, "
                "UNIQUE (namespace, name, dims))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS points (metric INTEGER NOT NULL, t INTEGER NOT NULL, "
                "n REAL NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, "
                "hist TEXT NOT NULL, PRIMARY KEY (metric, t)) WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS points_t ON points (t)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- writing ------------------------------------------------------------------------

    def put(self, namespace: str, points: Sequence[Datum]) -> None:
        merged: dict[tuple[str, tuple[tuple[str, str], ...], str, int], Aggregate] = {}
        now = dt.datetime.now(dt.UTC)
        for point in check_points(points):
            when = mon.parse_time(point.get("Timestamp") or now).timestamp()
            key = (
                point["MetricName"],
                dims_key(point.get("Dimensions", [])),
                point.get("Unit") or mon.UNITS.get(point["MetricName"], "None"),
                _bucket_start(when, RESOLUTION_SECONDS),
            )
            agg = Aggregate.of_datum(point)
            if agg.count <= 0:
                continue
            if key in merged:
                merged[key].merge(agg)
            else:
                merged[key] = agg
        if not merged:
            return
        with self._tx() as db:
            ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
            for (name, dims, unit, t), agg in merged.items():
                metric_id = ids.get((name, dims))
                if metric_id is None:
                    metric_id = self._metric_id(db, namespace, name, dims, unit)
                    ids[(name, dims)] = metric_id
                row = db.execute(
                    "SELECT n, total, lo, hi, hist FROM points WHERE metric = ? AND t = ?",
                    (metric_id, t),
                ).fetchone()
                if row is not None:
                    agg.merge(_aggregate(row))
                db.execute(
                    "INSERT INTO points (metric, t, n, total, lo, hi, hist) VALUES (?,?,?,?,?,?,?) "
                    "ON CONFLICT (metric, t) DO UPDATE SET n = excluded.n, total = excluded.total, "
                    "lo = excluded.lo, hi = excluded.hi, hist = excluded.hist",
                    (
                        metric_id,
                        t,
                        agg.count,
                        agg.total,
                        agg.minimum,
                        agg.maximum,
                        json.dumps(
                            {str(k): v for k, v in agg.buckets.items()}, separators=(",", ":")
                        ),
                    ),
                )

    @staticmethod
    def _metric_id(
        db: sqlite3.Connection,
        namespace: str,
        name: str,
        dims: tuple[tuple[str, str], ...],
        unit: str,
    ) -> int:
        text = json.dumps(dims, separators=(",", ":"))
        db.execute(
            "INSERT OR IGNORE INTO metrics (namespace, name, dims, unit) VALUES (?, ?, ?, ?)",
            (namespace, name, text, unit),
        )
        row = db.execute(
            "SELECT id FROM metrics WHERE namespace = ? AND name = ? AND dims = ?",
            (namespace, name, text),
        ).fetchone()
        return int(row[0])

    def prune(self, older_than: dt.datetime) -> int:
        """Drop buckets before ``older_than``; returns how many."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM points WHERE t < ?", (int(older_than.timestamp()),))
            return int(cur.rowcount)

    # --- reading ------------------------------------------------------------------------

    def get_metric_data(
        self, queries: Sequence[MetricQuery], start: dt.datetime, end: dt.datetime
    ) -> dict[str, Any]:
        check_window(start, end, queries)
        db = self._conn()
        results = []
        for q in queries:
            text = json.dumps(dims_key(q.dimensions), separators=(",", ":"))
            first = _bucket_start(start.timestamp(), q.period)
            rows = db.execute(
                "SELECT p.t, p.n, p.total, p.lo, p.hi, p.hist FROM points p JOIN metrics m "
                "ON m.id = p.metric WHERE m.namespace = ? AND m.name = ? AND m.dims = ? "
                "AND p.t >= ? AND p.t < ? ORDER BY p.t",
                (q.namespace, q.metric_name, text, first, end.timestamp()),
            ).fetchall()
            periods: dict[int, Aggregate] = {}
            for t, *rest in rows:
                bucket = _bucket_start(t, q.period)
                agg = _aggregate(tuple(rest))
                if bucket in periods:
                    periods[bucket].merge(agg)
                else:
                    periods[bucket] = agg
            timestamps, values = [], []
            for bucket in sorted(periods):
                value = periods[bucket].statistic(q.stat)
                if value is not None:
                    timestamps.append(mon.iso(float(bucket)))
                    values.append(value)
            results.append(
                {
                    "Id": q.id,
                    "Label": q.default_label,
                    "Timestamps": timestamps,
                    "Values": values,
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": []}

    def list_metrics(
        self,
        namespace: str,
        metric_name: str | None = None,
        dimensions: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        sql = "SELECT name, dims FROM metrics WHERE namespace = ?"
        args: list[Any] = [namespace]
        if metric_name:
            sql += " AND name = ?"
            args.append(metric_name)
        wanted = set((dimensions or {}).items())
        out = []
        for name, text in self._conn().execute(sql + " ORDER BY name, dims", args):
            dims = [tuple(d) for d in json.loads(text)]
            if wanted <= set(dims):
                out.append(
                    {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    }
                )
        return out


def _aggregate(row: tuple[Any, ...]) -> Aggregate:
    n, total, lo, hi, hist = row
    return Aggregate(
        count=n,
        total=total,
        minimum=lo,
        maximum=hi,
        buckets={int(k): v for k, v in json.loads(hist).items()},
    )
