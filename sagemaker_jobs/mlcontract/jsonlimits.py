"""Bounded JSON nesting, checked before parsing: ``json.loads`` recurses once per level, so a
body nested thousands of levels deep would reach the interpreter's recursion limit (and a
C-level parser its stack) before any validation runs. Standard library only (it ships in
every model archive with the rest of ``mlcontract``).
"""

from __future__ import annotations

MAX_DEPTH = 32

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\x02\x02")


def depth(raw: bytes | str, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a JSON text's arrays and objects, counted without parsing (text
    inside strings does not count); counting stops at ``limit + 1``. Unbalanced brackets
    count as far as they nest (the parser then says what is wrong)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if b'"' in data:
        # Drop the strings: escapes first (an escaped backslash, then an escaped quote),
        # then every other piece between quotes is a string's content.
        data = b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    # Opening brackets as 1, closing as 2: each pass removes every innermost pair, so the
    # number of passes until nothing is left is the depth (all in C, ~1 ms per MB a pass).
    pairs = data.translate(None, _NOT_BRACKETS).translate(_STEP)
    level = 0
    while pairs and level <= limit:
        shorter = pairs.replace(b"\x01\x02", b"")
        if len(shorter) == len(pairs):  # unbalanced: count what is left open as nested
            return level + pairs.count(b"\x01")
        pairs, level = shorter, level + 1
    return level


def too_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:  # cannot nest deeper than that
        return False
    return depth(data, limit) > limit
