"""Small PNG plots of an evaluation report, drawn with numpy and written with zlib: the
SageMaker scikit-learn image has no matplotlib, and the plots need only lines, points, bars,
a heat map and digits.

Plots: ``confusion_matrix``, ``roc``, ``pr``, ``calibration``, ``importance`` (permutation
importance), ``residuals`` (residual vs predicted). Each is a 400x300 RGB image: a white
plot area with a grey frame, data in blue (a dashed grey reference line where one applies).
"""

from __future__ import annotations

import itertools
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT, MARGIN = 400, 300, 30
BLUE = (31, 119, 180)
GREY = (160, 160, 160)
BLACK = (0, 0, 0)

# A 3x5 pixel font for digits and the few signs counts and labels need.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
}  # fmt: skip


def png(canvas: np.ndarray) -> bytes:
    """PNG bytes of an HxWx3 uint8 image."""
    height, width, _ = canvas.shape
    raw = b"".join(b"\x00" + canvas[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class Canvas:
    def __init__(self) -> None:
        self.pixels = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
        self.frame()

    def frame(self) -> None:
        left, top, right, bottom = MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN
        self.pixels[top, left:right] = GREY
        self.pixels[bottom, left:right] = GREY
        self.pixels[top:bottom, left] = GREY
        self.pixels[top : bottom + 1, right] = GREY

    def xy(self, x: float, y: float, box: tuple[float, float, float, float]) -> tuple[int, int]:
        x0, x1, y0, y1 = box
        fx = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
        fy = 0.0 if y1 == y0 else (y - y0) / (y1 - y0)
        px = MARGIN + fx * (WIDTH - 2 * MARGIN)
        py = HEIGHT - MARGIN - fy * (HEIGHT - 2 * MARGIN)
        return round(px), round(py)

    def dot(self, px: int, py: int, color: tuple[int, int, int], size: int = 1) -> None:
        self.pixels[
            max(py - size, 0) : min(py + size + 1, HEIGHT),
            max(px - size, 0) : min(px + size + 1, WIDTH),
        ] = color

    def line(self, xs: Any, ys: Any, box: Any, color: Any = BLUE, dashed: bool = False) -> None:
        points = [
            self.xy(x, y, box)
            for x, y in zip(xs, ys, strict=True)
            if x is not None and y is not None
        ]
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            steps = max(abs(bx - ax), abs(by - ay), 1)
            for i, t in enumerate(np.linspace(0.0, 1.0, steps + 1)):
                if not dashed or (i // 4) % 2 == 0:
                    x, y = ax + float(t) * (bx - ax), ay + float(t) * (by - ay)
                    self.dot(round(x), round(y), color, 0)

    def text(self, px: int, py: int, text: str, color: Any = BLACK, scale: int = 2) -> None:
        for index, char in enumerate(text):
            glyph = _GLYPHS.get(char)
            if glyph is None:
                continue
            for cell, bit in enumerate(glyph):
                if bit == "1":
                    row, col = divmod(cell, 3)
                    x = px + index * 4 * scale + col * scale
                    y = py + row * scale
                    self.pixels[y : y + scale, x : x + scale] = color

    def bytes(self) -> bytes:
        return png(self.pixels)


def curve(xs: list[Any], ys: list[Any], diagonal: bool) -> bytes:
    canvas = Canvas()
    box = (0.0, 1.0, 0.0, 1.0)
    if diagonal:
        canvas.line([0.0, 1.0], [0.0, 1.0], box, GREY, dashed=True)
    canvas.line(xs, ys, box)
    return canvas.bytes()


def confusion(matrix: list[list[int]]) -> bytes:
    canvas = Canvas()
    cells = np.asarray(matrix, dtype=float)
    n = max(len(cells), 1)
    peak = cells.max() if cells.size and cells.max() > 0 else 1.0
    width = (WIDTH - 2 * MARGIN) / n
    height = (HEIGHT - 2 * MARGIN) / n
    for i in range(n):
        for j in range(n):
            shade = 1.0 - 0.8 * cells[i, j] / peak
            color = tuple(int(255 - (255 - c) * (1 - shade)) for c in BLUE)
            top, left = int(MARGIN + i * height), int(MARGIN + j * width)
            canvas.pixels[top : int(top + height), left : int(left + width)] = color
            if n <= 12:
                canvas.text(left + 4, top + 4, str(int(cells[i, j])))
    canvas.frame()
    return canvas.bytes()


def bars(values: list[float]) -> bytes:
    canvas = Canvas()
    if values:
        peak = max(max(values), 1e-12)
        height = (HEIGHT - 2 * MARGIN) / len(values)
        for i, value in enumerate(values):
            top = int(MARGIN + i * height + 1)
            length = int(max(value, 0.0) / peak * (WIDTH - 2 * MARGIN))
            canvas.pixels[top : int(top + height - 1), MARGIN : MARGIN + length] = BLUE
    return canvas.bytes()


def scatter(xs: list[Any], ys: list[Any]) -> bytes:
    canvas = Canvas()
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if pairs:
        x0, x1 = min(p[0] for p in pairs), max(p[0] for p in pairs)
        bound = max(abs(p[1]) for p in pairs) or 1.0
        box = (x0, x1, -bound, bound)
        canvas.line([x0, x1], [0.0, 0.0], box, GREY, dashed=True)
        for x, y in pairs:
            canvas.dot(*canvas.xy(x, y, box), BLUE)
    return canvas.bytes()


def write_all(report: dict[str, Any], importance: list[float] | None, out_dir: Path) -> list[str]:
    """Every plot the report supports, as ``<name>.png`` in ``out_dir``; returns the names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, bytes] = {}
    if report["task"] == "classification":
        plots["confusion_matrix"] = confusion(report["confusion_matrix"]["matrix"])
        curves = next(iter(report.get("curves", {}).values()), None) or {}
        if curves.get("roc"):
            plots["roc"] = curve(curves["roc"]["fpr"], curves["roc"]["tpr"], diagonal=True)
        if curves.get("pr"):
            plots["pr"] = curve(curves["pr"]["recall"], curves["pr"]["precision"], False)
        if report.get("calibration"):
            bins = report["calibration"]
            plots["calibration"] = curve(
                [b["mean_predicted"] for b in bins], [b["fraction_positive"] for b in bins], True
            )
    else:
        points = report["residuals"]["vs_predicted"]
        plots["residuals"] = scatter(points["predicted"], points["residual"])
    if importance is not None:
        plots["importance"] = bars(importance)
    for name, data in plots.items():
        (out_dir / f"{name}.png").write_bytes(data)
    return sorted(plots)
