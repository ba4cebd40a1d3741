"""The unit tier starts no process: a test that needs one belongs in tests/contract."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise AssertionError("unit tests start no process: move this test to tests/contract")


@pytest.fixture(autouse=True)
def _no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse)
    monkeypatch.setattr(os, "fork", _refuse)
    monkeypatch.setattr(os, "posix_spawn", _refuse)
    yield
