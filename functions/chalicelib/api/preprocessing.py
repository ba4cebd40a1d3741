"""The preprocessing step catalog: what a pipeline's ``preprocessing`` may hold."""

from __future__ import annotations

from typing import Any

from chalicelib.api import Api
from mlcontract import preprocessing

api = Api(__name__)


@api.operation("/preprocessing/steps", "GET")
def preprocessing_steps() -> dict[str, Any]:
    """The preprocessing steps a pipeline may use, with their parameters' JSON Schema.

    Each step is a row step (run on the raw table before training) or a learned step
    (fitted inside the model, so serving applies it to raw rows); an example comes with each.
    """
    return {"steps": preprocessing.describe()}
