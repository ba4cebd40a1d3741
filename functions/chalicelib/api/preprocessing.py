"""``GET /preprocessing/steps``: the preprocessing steps a pipeline may use, with the JSON
Schema of their parameters and an example (``mlcontract.preprocessing.describe``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, IAMAuthorizer

from mlcontract import preprocessing

blueprint = Blueprint(__name__)
# API Gateway enforces it on AWS; Chalice's local server admits every request.
iam = IAMAuthorizer()


@blueprint.route("/preprocessing/steps", methods=["GET"], authorizer=iam)
def preprocessing_steps() -> dict[str, Any]:
    return {"steps": preprocessing.describe()}
