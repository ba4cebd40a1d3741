"""Test data for the monitoring tests: a dataset profile in the DESIGN.md baseline format
(what the data work writes and the split step records on each model version)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from chalicelib.monitoring import baseline


def baseline_of(frame: pd.DataFrame, types: dict[str, str]) -> dict[str, Any]:
    return baseline.of_frame(frame, types)


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
