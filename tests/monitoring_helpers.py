"""Test data for the monitoring tests: a dataset profile in the DESIGN.md baseline format
(what the data work writes and the split step records on each model version)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def baseline_of(frame: pd.DataFrame, types: dict[str, str]) -> dict[str, Any]:
    columns = []
    for name, kind in types.items():
        col = frame[name]
        present = col.dropna()
        spec: dict[str, Any] = {
            "name": name,
            "type": kind,
            "count": len(present),
            "missing": int(col.isna().sum()),
            "distinct": int(present.nunique()),
        }
        if kind in ("integer", "number"):
            values = present.to_numpy(dtype=np.float64)
            edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
            counts = (
                np.histogram(values, bins=edges)[0] if len(edges) > 1 else np.array([], dtype=int)
            )
            rng = np.random.default_rng(0)
            sample = rng.choice(values, size=min(1000, len(values)), replace=False)
            spec.update(
                min=float(values.min()),
                max=float(values.max()),
                mean=float(values.mean()),
                std=float(values.std()),
                quantiles={
                    f"p{q:02d}": float(np.quantile(values, q / 100))
                    for q in (1, 5, 25, 50, 75, 95, 99)
                },
                histogram={"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
                sample=sample.tolist(),
            )
        else:
            counts = present.astype(str).value_counts()
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            top = ordered[:50]
            spec.update(
                top=[[v, int(c)] for v, c in top], other=int(sum(c for _, c in ordered[50:]))
            )
        columns.append(spec)
    return {"format": 1, "rows": len(frame), "columns": columns}


TYPES = {f"x{i}": "number" for i in range(6)} | {
    "age": "integer",
    "colour": "string",
    "size": "string",
}


def traffic(n: int, seed: int, *, shift: bool = False) -> pd.DataFrame:
    """Features like the training data; with ``shift``, x3 moves by 0.5 sd and ``colour``
    changes its mix (and gains a category)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {f"x{i}": rng.normal(i, 1 + i / 2, size=n) for i in range(6)}
    if shift:
        data["x3"] = data["x3"] + 0.5 * (1 + 3 / 2)
    data["age"] = rng.integers(18, 80, size=n).astype(float)
    colours = ["red", "green", "blue"]
    p = [0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2]
    data["colour"] = rng.choice(colours, size=n, p=p).astype(object)
    if shift:
        data["colour"][: n // 50] = "purple"
    data["size"] = rng.choice(["S", "M", "L", "XL"], size=n).astype(object)
    frame = pd.DataFrame(data)
    frame.loc[rng.random(n) < 0.02, "x1"] = np.nan
    return frame
