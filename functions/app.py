"""The mlpipe API (Chalice): the REST routes (blueprints in chalicelib/api/) and the state
machine's step Lambdas (registered from the step registry, chalicelib/workflow.py).

Nothing heavy is imported here: pandas and scikit-learn load only inside the steps that
need them, so the API Lambda stays small and starts fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from chalice import Chalice

from chalicelib import steps, triggers, workflow
from chalicelib.api import batch, datasets, endpoints, models, pipelines, preprocessing, system

app = Chalice(app_name="mlpipe")
# Parquet uploads are bytes; API Gateway must pass them through unmangled.
app.api.binary_types.extend(["application/vnd.apache.parquet", "application/octet-stream"])
app.log.setLevel(logging.INFO)

for blueprint in (system, datasets, pipelines, preprocessing, models, endpoints, batch):
    app.register_blueprint(blueprint.api)

# One Lambda per registry entry; Chalice names the deployed handler "app.<function>", so
# each handler is also a module attribute here.
_module = sys.modules[__name__]
for _task in workflow.TASKS:
    _handler = steps.HANDLERS[_task.function]
    setattr(_module, _task.function, app.lambda_function(name=_task.function)(_handler))


@app.lambda_function(name="retrain")
def retrain(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge: a schedule or new data under incoming/ starts pipeline runs."""
    from chalicelib.runtime import ports

    return triggers.handle(ports(), event)
