"""Request bodies and the pipeline spec: every input is validated here, with pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from chalicelib.contracts import Contract
from chalicelib.names import EndpointName, Name
from chalicelib.sources.models import HttpSource, S3Source, SqlSource, UploadSource
from mlcontract import catalog, metrics
from mlcontract import preprocessing as prep

Task = Literal["classification", "regression"]


class Strict(BaseModel):
    # allow_inf_nan=False: NaN and Infinity are refused everywhere (strict JSON has neither).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, allow_inf_nan=False)


# --- datasets -----------------------------------------------------------------------------


class InlineSource(Strict):
    type: Literal["inline"]
    data: str = Field(description="The file's content as text (base64 for parquet).")
    encoding: Literal["text", "base64"] = "text"


class FileSource(Strict):
    type: Literal["file"]
    path: str = Field(
        min_length=1,
        description="A file under one of the server's allowed roots (MLPIPE_FILE_ROOTS).",
    )


DatasetSource = Annotated[
    InlineSource | FileSource | SqlSource | S3Source | HttpSource | UploadSource,
    Field(discriminator="type"),
]
DatasetFormat = Literal["csv", "parquet", "json", "jsonl"]


class DatasetCreate(Strict):
    name: Name
    source: DatasetSource
    format: DatasetFormat = "csv"
    contract: Contract | Literal["inferred"] | None = Field(
        default=None,
        description=(
            "Column rules checked on this and every later version (see contracts.py); "
            '"inferred": this version\'s own schema becomes the contract.'
        ),
    )


# --- pipelines ----------------------------------------------------------------------------


class DatasetRef(Strict):
    name: Name
    version: int | None = Field(default=None, ge=1, description="Omit to use the latest.")


# Preprocessing steps: validated and normalized by the step catalog (every parameter present,
# defaults filled in); GET /preprocessing/steps lists them with their parameter schemas.
PreprocessingSteps = Annotated[list[dict[str, Any]], WithJsonSchema(prep.json_schema())]


class ModelSpec(Strict):
    algorithm: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class EvaluationSpec(Strict):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    metrics: list[str] = Field(default_factory=list, description="Default: all for the task.")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Quality gate: a floor per metric (a ceiling for rmse and mae).",
    )


class DeploymentSpec(Strict):
    endpoint: EndpointName
    alias: Name = "production"


class PipelineCreate(Strict):
    name: Name
    dataset: DatasetRef
    target: str = Field(min_length=1)
    task: Task
    preprocessing: PreprocessingSteps = Field(default_factory=list)
    model: ModelSpec
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    deployment: DeploymentSpec | None = None
    model_name: Name | None = Field(default=None, description="Defaults to the pipeline name.")
    seed: int = Field(default=42, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> PipelineCreate:
        if self.model_name is None:
            self.model_name = self.name
        if isinstance(info.context, dict) and info.context.get("trusted"):
            return self  # an execution input we wrote after validating it at run start
        try:
            catalog.validate_hyperparameters(
                self.model.algorithm, self.task, self.model.hyperparameters
            )
        except catalog.HyperparameterError as exc:
            raise ValueError(str(exc)) from None
        metrics.check(self.task, [*self.evaluation.metrics, *self.evaluation.thresholds])
        self.preprocessing = prep.validate_steps(
            self.preprocessing, task=self.task, target=self.target
        )
        return self

    @property
    def report_metrics(self) -> list[str]:
        """What the evaluation job computes: the named metrics plus any gated one; none named
        means every metric defined for the model (the job knows its classes)."""
        if not self.evaluation.metrics:
            return []
        return list(dict.fromkeys([*self.evaluation.metrics, *self.evaluation.thresholds]))


class RunCreate(Strict):
    dataset_version: int | None = Field(
        default=None, ge=1, description="Override the pipeline's dataset version."
    )


# --- models and endpoints -------------------------------------------------------------------


class AliasSet(Strict):
    version: int = Field(ge=1)


class EndpointCreate(Strict):
    name: EndpointName
    model: Name
    alias: Name | None = None
    version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> EndpointCreate:
        if (self.alias is None) == (self.version is None):
            raise ValueError("give exactly one of 'alias' or 'version'")
        return self


# --- batch predictions -----------------------------------------------------------------------


class BatchOutput(Strict):
    dataset: Name = Field(description="The dataset that gets the scored rows as a new version.")


class BatchPredictionCreate(Strict):
    model: Name
    model_version: int | None = Field(default=None, ge=1)
    alias: Name | None = None
    dataset: DatasetRef = Field(description="The dataset version to score (omit version: latest).")
    output: BatchOutput
    chunk_rows: int = Field(
        default=65536,
        ge=1,
        le=1_000_000,
        description="Rows scored at a time by the local job (memory holds one chunk). On AWS "
        "each Parquet object is one Batch Transform request.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> BatchPredictionCreate:
        if (self.alias is None) == (self.model_version is None):
            raise ValueError("give exactly one of 'model_version' or 'alias'")
        return self
