"""Feature drift of captured traffic against a model version's baseline (the dataset profile
of its training split, format in DESIGN.md "Dataset profile / drift baseline").

Per feature:

- numeric (``integer`` | ``number``): **PSI** over the baseline's decile edges (values
  outside the baseline's range fall in the outer bins) and the two-sample
  **Kolmogorov-Smirnov** test against the baseline's sample (<= 1000 values);
- categorical (``string`` | ``boolean``): **PSI** over the baseline's listed categories plus
  one bin for everything else, and **chi-square** on the 2 x k table of baseline and current
  counts (``scipy.stats.chi2_contingency``); values the baseline does not list are counted
  (``new_categories``, ``new_category_rows``).

A feature has drifted when its PSI reaches ``psi_threshold`` **and** the test's p-value is
below ``p_value_threshold``: PSI says the change is large enough to matter (with a million
rows any change is "significant"), the p-value that it is not noise (with fifty rows a PSI
of 0.3 can be chance). Missing values are left out of both and reported as rates.

Speed: each numeric column is sorted once (a million floats in tens of milliseconds); PSI
bin counts and the KS statistic are then binary searches of the <= 11 edges and the <= 1000
baseline sample points among the sorted values. The empirical CDFs differ most at a sample
point, so this is exactly the statistic ``scipy.stats.ks_2samp`` computes (ties included; a
test checks it), and the p-value is scipy's own (``scipy.stats.kstwo``, as
``ks_2samp(..., method="asymp")`` computes it). Categorical columns are counted first
(``value_counts``) and labelled after. ``benchmarks/drift.py`` compares with the plain
pandas/scipy calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

FORMAT = 1
PSI_THRESHOLD = 0.2
P_VALUE_THRESHOLD = 0.05
# Proportions of empty bins are floored so PSI stays finite (a common convention).
PSI_EPSILON = 1e-4
NUMERIC = frozenset({"integer", "number"})
CATEGORICAL = frozenset({"string", "boolean"})


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = expected / max(expected.sum(), 1)
    a = actual / max(actual.sum(), 1)
    e = np.maximum(e, PSI_EPSILON)
    a = np.maximum(a, PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _ks(sample_sorted: np.ndarray, values_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic D and p-value of ``values`` against the baseline sample, both
    sorted.

    F_s (the sample's ECDF) is constant between sample points and F_v is monotone, so
    sup|F_s - F_v| is reached at a sample point, from the left or at it: only #{v < s_k}
    and #{v <= s_k} are needed, found by locating the <= 1000 sample points among the sorted
    values. The p-value is ``scipy.stats.ks_2samp(..., method="asymp")``'s: the Kolmogorov
    distribution ``scipy.stats.kstwo`` at n = round(m*n/(m+n))."""
    m, n = len(sample_sorted), len(values_sorted)
    if m == 0 or n == 0:
        return math.nan, math.nan
    less = np.searchsorted(values_sorted, sample_sorted, side="left") / n  # F_v before s_k
    leq = np.searchsorted(values_sorted, sample_sorted, side="right") / n  # F_v at s_k
    fs_left = np.searchsorted(sample_sorted, sample_sorted, side="left") / m
    fs_at = np.searchsorted(sample_sorted, sample_sorted, side="right") / m
    d = float(max(np.max(np.abs(fs_left - less)), np.max(np.abs(fs_at - leq))))
    en = m * n / (m + n)
    p = float(stats.kstwo.sf(d, np.round(en)))
    return d, min(max(p, 0.0), 1.0)


def _numeric_values(column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def _numeric(spec: Mapping[str, Any], column: pd.Series) -> dict[str, Any]:
    # One sort (tens of ms for a million floats) makes every count below a binary search.
    values = np.sort(_numeric_values(column))
    out: dict[str, Any] = {"kind": "numeric", "test": "ks"}
    hist = spec.get("histogram") or {}
    edges = np.asarray(hist.get("edges") or [], dtype=np.float64)
    base_counts = np.asarray(hist.get("counts") or [], dtype=np.float64)
    if len(edges) >= 2 and len(base_counts) == len(edges) - 1 and len(values):
        # Bins [e_i, e_i+1) over the interior edges; the outer bins are open-ended.
        cuts = np.searchsorted(values, edges[1:-1], side="left")
        current = np.diff(np.concatenate([[0], cuts, [len(values)]])).astype(np.float64)
        out["psi"] = psi(base_counts, current)
        out["histogram"] = {
            "edges": edges.tolist(),
            "baseline": (base_counts / max(base_counts.sum(), 1)).round(6).tolist(),
            "current": (current / max(current.sum(), 1)).round(6).tolist(),
        }
    elif len(edges) == 1 and len(values):  # a constant column in training
        out["psi"] = psi(
            np.array([1.0, 0.0]), np.array([np.sum(values == edges[0]), np.sum(values != edges[0])])
        )
    else:
        out["psi"] = None
    sample = np.sort(np.asarray(spec.get("sample") or [], dtype=np.float64))
    sample = sample[np.isfinite(sample)]
    d, p = _ks(sample, values) if len(sample) and len(values) else (math.nan, math.nan)
    out["statistic"], out["p_value"] = d, p
    if len(values):
        out["current_mean"] = float(values.mean())
    out["baseline_mean"] = spec.get("mean")
    return out


def _categorical(spec: Mapping[str, Any], column: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "categorical", "test": "chi2"}
    # Count first, then name the values as the profile does (as text; booleans lowercase).
    current_map: dict[str, float] = {}
    for value, n in column.value_counts(sort=False, dropna=True).items():
        label = str(value).lower() if isinstance(value, bool | np.bool_) else str(value)
        current_map[label] = current_map.get(label, 0.0) + float(n)
    top = [(str(v), float(c)) for v, c in spec.get("top") or []]
    known = {v for v, _ in top}
    base = np.array([c for _, c in top] + [float(spec.get("other") or 0)], dtype=np.float64)
    current = np.array(
        [float(current_map.get(v, 0)) for v, _ in top]
        + [float(sum(c for v, c in current_map.items() if v not in known))],
        dtype=np.float64,
    )
    unseen = {v: c for v, c in current_map.items() if v not in known}
    out["new_categories"] = len(unseen)
    out["new_category_rows"] = int(sum(unseen.values()))
    out["baseline_lists_all"] = not spec.get("other")
    if current.sum() == 0 or base.sum() == 0:
        out.update(psi=None, statistic=math.nan, p_value=math.nan)
        return out
    out["psi"] = psi(base, current)
    table = np.vstack([base, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        out["statistic"], out["p_value"] = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table, correction=False)
        out["statistic"], out["p_value"] = float(result.statistic), float(result.pvalue)
    labels = [v for v, _ in top] + ["(other)"]
    out["categories"] = {
        "labels": labels[:20] + (["..."] if len(labels) > 20 else []),
        "baseline": (base / base.sum()).round(6).tolist()[:20],
        "current": (current / current.sum()).round(6).tolist()[:20],
    }
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_drift(
    baseline: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    features: Iterable[str] | None = None,
    psi_threshold: float = PSI_THRESHOLD,
    p_value_threshold: float = P_VALUE_THRESHOLD,
) -> dict[str, Any]:
    """The drift report of ``frame`` (captured rows, one column per feature) against
    ``baseline`` (a dataset profile). Non-finite numbers are ``None``."""
    if baseline.get("format") != 1:
        raise ValueError(f"unsupported baseline format {baseline.get('format')!r}")
    specs = {c["name"]: c for c in baseline.get("columns", [])}
    names = list(features) if features is not None else [n for n in specs if n in frame.columns]
    report_features = []
    for name in names:
        spec = specs.get(name)
        if spec is None or name not in frame.columns:
            continue
        kind = spec.get("type")
        column = frame[name]
        if kind in NUMERIC:
            result = _numeric(spec, column)
        elif kind in CATEGORICAL:
            result = _categorical(spec, column)
        else:  # datetimes: no distribution in the profile
            continue
        rows = len(column)
        missing = int(column.isna().sum())
        psi_value, p = result.get("psi"), result.get("p_value")
        drifted = bool(
            psi_value is not None
            and p is not None
            and math.isfinite(p)
            and psi_value >= psi_threshold
            and p < p_value_threshold
        )
        base_count = (spec.get("count") or 0) + (spec.get("missing") or 0)
        report_features.append(
            {
                "name": name,
                "type": kind,
                **{k: _finite(v) for k, v in result.items()},
                "threshold": {"psi": psi_threshold, "p_value": p_value_threshold},
                "drifted": drifted,
                "rows": rows,
                "missing_rate": missing / rows if rows else None,
                "baseline_missing_rate": (spec.get("missing") or 0) / base_count
                if base_count
                else None,
            }
        )
    drifted_names = [f["name"] for f in report_features if f["drifted"]]
    return {
        "format": FORMAT,
        "rows": len(frame),
        "baseline_rows": baseline.get("rows"),
        "features": report_features,
        "drifted_features": drifted_names,
        "drifted": bool(drifted_names),
        "thresholds": {"psi": psi_threshold, "p_value": p_value_threshold},
    }


def metric_points(
    report: Mapping[str, Any], endpoint: str, timestamp: float
) -> list[dict[str, Any]]:
    """``FeatureDrift`` (the PSI) per feature, ``DriftedFeatures`` and ``CapturedRows``."""
    from mlcontract import monitoring as mon

    points = []
    for f in report["features"]:
        if f.get("psi") is not None:
            points.append(
                mon.datum(
                    mon.FEATURE_DRIFT,
                    {mon.ENDPOINT: endpoint, mon.FEATURE: f["name"]},
                    timestamp,
                    value=f["psi"],
                )
            )
    points.append(
        mon.datum(
            mon.DRIFTED_FEATURES,
            {mon.ENDPOINT: endpoint},
            timestamp,
            value=len(report["drifted_features"]),
        )
    )
    points.append(
        mon.datum(mon.CAPTURED_ROWS, {mon.ENDPOINT: endpoint}, timestamp, value=report["rows"])
    )
    return points


# --- reading captures fast (the job's path; the API reads small windows through
# mlcontract.capture) --------------------------------------------------------------------


def frame_from_captures(
    lines: Iterable[str],
    signature: Sequence[Mapping[str, str]],
    *,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Captured requests -> one row per input row (columns in signature order, plus
    ``prediction``, ``inference_id`` and ``inference_time``). Bodies in the canonical
    ``dataframe_split`` form (what the API forwards) are taken as they are; any other form
    goes through ``mlcontract.scoring``."""
    import json

    from mlcontract import capture, scoring

    sig = scoring.Signature(signature)
    names = list(sig.columns)
    rows: list[list[Any]] = []
    predictions: list[Any] = []
    ids: list[str] = []
    times: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = capture.parse_line(line)
        except (ValueError, KeyError, TypeError):
            continue
        if (start is not None and rec.time < start) or (end is not None and rec.time >= end):
            continue
        try:
            preds = json.loads(rec.output_body).get("predictions")
            body = (
                json.loads(rec.input_body)
                if scoring.media_type(rec.input_content_type) == scoring.JSON
                else None
            )
            split = body.get("dataframe_split") if isinstance(body, dict) else None
            if isinstance(split, dict) and split.get("columns") == names:
                data = split["data"]
            else:
                data = scoring.parse(
                    rec.input_body, rec.input_content_type, sig, max_rows=None
                ).rows()
        except (ValueError, AttributeError):
            continue
        if not isinstance(preds, list) or len(preds) != len(data):
            continue
        rows.extend(data)
        predictions.extend(preds)
        ids.extend([rec.inference_id] * len(data))
        times.extend([capture._iso(rec.time)] * len(data))
    frame = pd.DataFrame(rows, columns=names)
    for name, kind in zip(sig.columns, sig.types, strict=True):
        if kind in NUMERIC:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame["prediction"] = predictions
    frame["inference_id"] = ids
    frame["inference_time"] = (
        pd.to_datetime(times, utc=True) if times else pd.Series([], dtype="datetime64[ns, UTC]")
    )
    return frame
