"""The local Lambda plug: moto runs Lambda functions in Docker; we have none. This replaces
the one moto internal that launches the container so that the project's own handler runs in
this process instead. It is the only place that touches moto internals (moto is pinned; the
test ``tests/contract/test_lambda_plug.py`` fails loudly if an upgrade moves this).
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from moto.awslambda.models import LambdaFunction

log = logging.getLogger("mlpipe.lambda")

Handler = Callable[[Any, Any], Any]
_handlers: dict[str, Handler] = {}
_lock = threading.Lock()
_original = LambdaFunction._invoke_lambda


def _invoke_in_process(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    handler = _handlers.get(self.function_name)
    if handler is None:
        return _original(self, event)
    context = SimpleNamespace(
        function_name=self.function_name,
        aws_request_id="local",
        memory_limit_in_mb=self.memory_size,
    )
    try:
        result = handler(event if event is not None else {}, context)
    except Exception as exc:
        # What the Lambda runtime does with an unhandled exception: the class name becomes
        # the error Step Functions matches in Retry/Catch. The trace goes to the log only,
        # and only for the unexpected: a StepError is a user-facing outcome, not a bug.
        if type(exc).__name__ == "StepError":
            log.info("%s: %s", self.function_name, exc)
        else:
            log.warning("%s failed: %s\n%s", self.function_name, exc, traceback.format_exc())
        payload = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        return json.dumps(payload), True, ""
    return json.dumps(result), False, ""


def install(handlers: dict[str, Handler]) -> None:
    with _lock:
        _handlers.clear()
        _handlers.update(handlers)
        LambdaFunction._invoke_lambda = _invoke_in_process  # type: ignore[method-assign]


def uninstall() -> None:
    with _lock:
        _handlers.clear()
        LambdaFunction._invoke_lambda = _original  # type: ignore[method-assign]
