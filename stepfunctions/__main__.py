"""``python -m stepfunctions``: rewrite pipeline.asl.json from the step registry."""

from __future__ import annotations

import sys

from stepfunctions import DEFINITION_PATH, text

if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        sys.exit(0 if DEFINITION_PATH.read_text() == text() else 1)
    DEFINITION_PATH.write_text(text())
    print(f"wrote {DEFINITION_PATH}")
