"""The drift baseline of a model version: per-feature statistics of its training split.

Written by the ``split`` step next to the train channel (``runs/<id>/split/baseline.json``)
and recorded on the model version by ``register`` (``baseline_key``); drift checks
(``driftstats.check_drift``) compare captured traffic with it. Format 1:

``{"format": 1, "rows", "columns": [{"name", "type", "count", "missing", "distinct", ...}]}``
with, for numeric columns, ``min``/``max``/``mean``/``std``, quantiles, a decile
``histogram`` (``edges``, ``counts``: the PSI bins) and a ``sample`` of at most 1000 values
(the Kolmogorov-Smirnov reference); for categorical ones the ``top`` 50 values with counts
and the count of the ``other`` values (PSI and chi-square bins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMAT = 1
SAMPLE = 1000
TOP = 50
NUMERIC = frozenset({"integer", "number"})


def of_frame(frame: Any, types: Mapping[str, str], seed: int = 0) -> dict[str, Any]:
    """The baseline of ``frame``'s columns named in ``types`` (name -> column type)."""
    import numpy as np

    rng = np.random.default_rng(seed)
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
        if kind in NUMERIC:
            values = present.to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values):
                edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
                counts = (
                    np.histogram(values, bins=edges)[0]
                    if len(edges) > 1
                    else np.array([], dtype=int)
                )
                sample = rng.choice(values, size=min(SAMPLE, len(values)), replace=False)
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
            labels = present.map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
            counts = labels.value_counts()
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            spec.update(
                top=[[v, int(c)] for v, c in ordered[:TOP]],
                other=int(sum(c for _, c in ordered[TOP:])),
            )
        columns.append(spec)
    return {"format": FORMAT, "rows": len(frame), "columns": columns}
