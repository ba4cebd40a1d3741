"""Test tiers, by directory.

- ``tests/unit``: the domain with in-memory fakes; no subprocess (tests/unit/conftest.py
  enforces it), seconds in all.
- ``tests/contract``: each port's implementations against the same expectations, the job
  scripts as processes, external tools.
- ``tests/e2e``: the product through its REST API on the embedded stack (or a real browser);
  marked ``e2e`` here so ``pytest -m "not e2e"`` runs the fast tiers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
