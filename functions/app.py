"""The mlpipe API (Chalice): REST routes and the state machine's step Lambdas, all thin.

Nothing heavy is imported here: pandas and scikit-learn load only inside the steps that
need them, so the API Lambda stays small and starts fast.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from chalice import Chalice, IAMAuthorizer, Response
from pydantic import BaseModel, ValidationError

from chalicelib import datasets, deployment, openapi, pipelines, registry, runs, steps
from chalicelib.errors import BadRequestError, MLPipeError, TransientError
from chalicelib.names import check_name
from chalicelib.runtime import ports
from chalicelib.schemas import (
    AliasSet,
    DatasetCreate,
    EndpointCreate,
    PipelineCreate,
    RunCreate,
)
from mlcontract import catalog

app = Chalice(app_name="mlpipe")
# Parquet uploads are bytes; API Gateway must pass them through unmangled.
app.api.binary_types.append("application/vnd.apache.parquet")
app.log.setLevel(logging.INFO)
log = logging.getLogger("mlpipe.api")

M = TypeVar("M", bound=BaseModel)

# On AWS every route but /health and /openapi.json needs a SigV4-signed caller allowed
# execute-api:Invoke (these routes start SageMaker work that bills by the hour). Chalice's
# local server admits all requests; it listens on loopback only.
iam = IAMAuthorizer()


def _error(status: int, code: str, message: str) -> Response:
    return Response(body={"Code": code, "Message": message}, status_code=status)


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def api(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Domain errors -> their 4xx; anything unexpected -> a bare 500, logged, never echoed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MLPipeError as exc:
            if exc.status_code >= 500:
                log.error("%s: %s", exc.code, exc.message)
            return _error(exc.status_code, exc.code, exc.message)
        except Exception:
            log.exception("unhandled error in %s", fn.__name__)
            return _error(500, "InternalError", "internal error")

    return wrapper


def body(model: type[M]) -> M:
    request = app.current_request
    raw = request.raw_body if request is not None else b""
    if not raw:
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequestError("the request body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # only the caller's body is a 400; ours would be a bug
        raise BadRequestError(_describe_validation(exc)) from None


def name_param(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def int_param(value: str, what: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise BadRequestError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# --- service ------------------------------------------------------------------------------


@app.route("/health", methods=["GET"])
@api
def health() -> dict[str, Any]:
    settings = ports().settings
    return {"status": "ok", "profile": settings.profile}


@app.route("/openapi.json", methods=["GET"])
@api
def openapi_document() -> dict[str, Any]:
    return openapi.document()


@app.route("/algorithms", methods=["GET"], authorizer=iam)
@api
def algorithms() -> dict[str, Any]:
    return {"algorithms": catalog.describe()}


# --- datasets -----------------------------------------------------------------------------


@app.route("/datasets", methods=["POST"], authorizer=iam)
@api
def create_dataset() -> Response:
    return Response(datasets.create(ports(), body(DatasetCreate)), status_code=201)


@app.route(
    "/datasets/{name}/versions",
    methods=["POST"],
    content_types=sorted(datasets.UPLOAD_FORMATS),
    authorizer=iam,
)
@api
def upload_dataset_version(name: str) -> Response:
    request = app.current_request
    assert request is not None
    raw = request.raw_body or b""
    created = datasets.upload(
        ports(),
        name_param(name, "dataset name"),
        raw.encode() if isinstance(raw, str) else raw,
        request.headers.get("content-type", ""),
    )
    return Response(created, status_code=201)


@app.route("/datasets", methods=["GET"], authorizer=iam)
@api
def list_datasets() -> dict[str, Any]:
    return {"datasets": datasets.list_all(ports())}


@app.route("/datasets/{name}", methods=["GET"], authorizer=iam)
@api
def get_dataset(name: str) -> dict[str, Any]:
    return datasets.describe(ports(), name_param(name, "dataset name"))


@app.route("/datasets/{name}/versions/{version}", methods=["GET"], authorizer=iam)
@api
def get_dataset_version(name: str, version: str) -> dict[str, Any]:
    record = datasets.get_version(
        ports(), name_param(name, "dataset name"), int_param(version, "version")
    )
    return {k: v for k, v in record.items() if k != "key"}


# --- pipelines and runs -------------------------------------------------------------------


@app.route("/pipelines", methods=["POST"], authorizer=iam)
@api
def create_pipeline() -> Response:
    return Response(pipelines.create(ports(), body(PipelineCreate)), status_code=201)


@app.route("/pipelines", methods=["GET"], authorizer=iam)
@api
def list_pipelines() -> dict[str, Any]:
    return {"pipelines": pipelines.list_all(ports())}


@app.route("/pipelines/{name}", methods=["GET"], authorizer=iam)
@api
def get_pipeline(name: str) -> dict[str, Any]:
    return pipelines.get(ports(), name_param(name, "pipeline name"))


@app.route("/pipelines/{name}/runs", methods=["POST"], authorizer=iam)
@api
def start_run(name: str) -> Response:
    started = runs.start(ports(), name_param(name, "pipeline name"), body(RunCreate))
    return Response(started, status_code=202, headers={"Location": f"/runs/{started['run_id']}"})


@app.route("/pipelines/{name}/runs", methods=["GET"], authorizer=iam)
@api
def list_runs(name: str) -> dict[str, Any]:
    return {"runs": runs.list_for_pipeline(ports(), name_param(name, "pipeline name"))}


@app.route("/runs/{run_id}", methods=["GET"], authorizer=iam)
@api
def get_run(run_id: str) -> dict[str, Any]:
    return runs.get(ports(), name_param(run_id, "run id"))


@app.route("/runs/{run_id}/events", methods=["GET"], authorizer=iam)
@api
def get_run_events(run_id: str) -> dict[str, Any]:
    return {"events": runs.events(ports(), name_param(run_id, "run id"))}


# --- models -------------------------------------------------------------------------------


@app.route("/models", methods=["GET"], authorizer=iam)
@api
def list_models() -> dict[str, Any]:
    return {"models": registry.list_models(ports())}


@app.route("/models/{name}", methods=["GET"], authorizer=iam)
@api
def get_model(name: str) -> dict[str, Any]:
    return registry.get_model(ports(), name_param(name, "model name"))


@app.route("/models/{name}/versions", methods=["GET"], authorizer=iam)
@api
def list_model_versions(name: str) -> dict[str, Any]:
    return {"versions": registry.list_versions(ports(), name_param(name, "model name"))}


@app.route("/models/{name}/versions/{version}", methods=["GET"], authorizer=iam)
@api
def get_model_version(name: str, version: str) -> dict[str, Any]:
    record = registry.get_version(
        ports(), name_param(name, "model name"), int_param(version, "version")
    )
    return registry.public(record)


@app.route("/models/{name}/aliases/{alias}", methods=["PUT"], authorizer=iam)
@api
def set_model_alias(name: str, alias: str) -> dict[str, Any]:
    req = body(AliasSet)
    return deployment.move_alias(
        ports(), name_param(name, "model name"), name_param(alias, "alias"), req.version
    )


# --- endpoints ----------------------------------------------------------------------------


@app.route("/endpoints", methods=["POST"], authorizer=iam)
@api
def create_endpoint() -> Response:
    return Response(deployment.create(ports(), body(EndpointCreate)), status_code=201)


@app.route("/endpoints", methods=["GET"], authorizer=iam)
@api
def list_endpoints() -> dict[str, Any]:
    return {"endpoints": deployment.list_all(ports())}


@app.route("/endpoints/{name}", methods=["GET"], authorizer=iam)
@api
def get_endpoint(name: str) -> dict[str, Any]:
    return deployment.get(ports(), name_param(name, "endpoint name"))


@app.route("/endpoints/{name}/rollback", methods=["POST"], authorizer=iam)
@api
def rollback_endpoint(name: str) -> dict[str, Any]:
    return deployment.rollback(ports(), name_param(name, "endpoint name"))


@app.route(
    "/endpoints/{name}/invocations",
    methods=["POST"],
    content_types=["application/json", "text/csv"],
    authorizer=iam,
)
@api
def invoke_endpoint(name: str) -> dict[str, Any]:
    request = app.current_request
    assert request is not None
    raw = request.raw_body or b""
    return deployment.invoke(
        ports(),
        name_param(name, "endpoint name"),
        raw.encode() if isinstance(raw, str) else raw,
        request.headers.get("content-type", "application/json"),
    )


# --- state machine steps (Lambda functions; see stepfunctions/pipeline.asl.json) ----------

StepFn = TypeVar("StepFn", bound=Callable[..., dict[str, Any]])


def step(fn: StepFn) -> StepFn:
    """Raise what the state machine's Retry matches (TransientError) for passing trouble;
    everything else propagates and its class name is the error the Catch records."""

    @functools.wraps(fn)
    def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return fn(event, context)
        except MLPipeError:
            raise
        except Exception as exc:
            if steps.transient(exc):
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc
            raise

    return wrapper  # type: ignore[return-value]


@app.lambda_function(name="ingest")
@step
def ingest(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.ingest(ports(), event)


@app.lambda_function(name="validate")
@step
def validate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.validate(ports(), event)


@app.lambda_function(name="split")
@step
def split(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.split_data(ports(), event)


@app.lambda_function(name="start_training")
@step
def start_training(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.start_training(ports(), event)


@app.lambda_function(name="check_training")
@step
def check_training(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.check_job(ports(), event, "train", "train_job")


@app.lambda_function(name="start_evaluation")
@step
def start_evaluation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.start_evaluation(ports(), event)


@app.lambda_function(name="check_evaluation")
@step
def check_evaluation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.check_job(ports(), event, "evaluate", "eval_job")


@app.lambda_function(name="quality_gate")
@step
def quality_gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.quality_gate(ports(), event)


@app.lambda_function(name="register")
@step
def register(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.register(ports(), event)


@app.lambda_function(name="deploy")
@step
def deploy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.deploy(ports(), event)


@app.lambda_function(name="finish")
@step
def finish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.finish(ports(), event)


@app.lambda_function(name="fail_run")
@step
def fail_run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.fail_run(ports(), event)
