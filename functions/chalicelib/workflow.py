"""The step registry: every Lambda step of the state machine, named once.

From this table come the ASL's Task states (``stepfunctions/``, with one shared Retry and
Catch policy), the Chalice Lambda functions (``app.py``), the user-visible step list of a
run, and the template's functions and substitutions (``iac/template.yaml``, kept equal by a
test). Adding a step is one entry here, its handler in ``steps.py`` and its place in the flow
(``stepfunctions/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Every execution is a run of some kind; what a user sees of it, in order (GET /runs/{id}
# "steps"). A new kind of work adds its steps here, its Tasks below, its flow in
# stepfunctions/__init__.py and how it ends in steps.py (ENDINGS).
STEPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "pipeline": (
        "ingest", "validate", "split", "train", "evaluate", "quality_gate", "register", "deploy",
    ),
    # A batch prediction (chalicelib/batch.py): score a dataset version, keep the output.
    "batch": ("transform", "register_output"),
}  # fmt: skip
RUN_STEPS = STEPS_BY_KIND["pipeline"]


@dataclass(frozen=True)
class Task:
    """One Task state and the Lambda function that runs in it."""

    state: str  # the ASL state: says what runs in it
    function: str  # the Chalice lambda_function name = the handler's name in steps.py
    result_path: str  # where its result goes in the execution state
    run_step: str | None  # the user-visible step it reports on (None: bookkeeping)
    comment: str
    catch: bool = True  # every Task but the failure recorder hands errors to it
    kind: str = "pipeline"  # the kind of run whose step it reports on

    @property
    def placeholder(self) -> str:
        """``${...}`` name in the ASL, substituted with the function's ARN."""
        return "".join(part.title() for part in self.function.split("_")) + "FunctionArn"


TASKS: tuple[Task, ...] = (
    Task("LoadDataset", "ingest", "$.ingest", "ingest",
         "Resolve the dataset version and check it can feed this pipeline."),
    Task("CleanData", "validate", "$.clean", "validate",
         "Apply the pipeline's row-level cleaning; drop rows without a target."),
    Task("SplitTrainTest", "split", "$.split", "split",
         "Seeded, stratified train/test split into two channels."),
    Task("StartTrainingJob", "start_training", "$.train_job", "train",
         "Start the training job (named from the run id, state and attempt)."),
    Task("CheckTrainingJob", "check_training", "$.train_job", "train",
         "Describe the training job; fail the run if it failed or was stopped."),
    Task("StartEvaluationJob", "start_evaluation", "$.eval_job", "evaluate",
         "Start the evaluation job on the held-out split."),
    Task("CheckEvaluationJob", "check_evaluation", "$.eval_job", "evaluate",
         "Describe the evaluation job; fail the run if it failed or was stopped."),
    Task("ApplyQualityGate", "quality_gate", "$.gate", "quality_gate",
         "Record the metrics and compare them with the pipeline's thresholds."),
    Task("RegisterModelVersion", "register", "$.model", "register",
         "Register the model version (idempotent per run)."),
    Task("DeployModelVersion", "deploy", "$.deployment", "deploy",
         "Move the alias (never backwards) and serve it on the pipeline's endpoint."),
    Task("StartTransformJob", "start_transform", "$.transform_job", "transform",
         "Start the batch transform job scoring the dataset version.", kind="batch"),
    Task("CheckTransformJob", "check_transform", "$.transform_job", "transform",
         "Describe the batch transform job; fail the run if it failed or was stopped.",
         kind="batch"),
    Task("RegisterOutputDataset", "register_output", "$.output", "register_output",
         "Record the scored rows as a new version of the output dataset (idempotent).",
         kind="batch"),
    Task("RecordSuccess", "finish", "$.result", None, "Mark the run SUCCEEDED."),
    Task("RecordFailure", "fail_run", "$.result", None,
         "Record the error on the run, naming the step it failed in.", catch=False),
)  # fmt: skip

BY_FUNCTION: dict[str, Task] = {t.function: t for t in TASKS}
BY_STATE: dict[str, Task] = {t.state: t for t in TASKS}
FUNCTIONS: tuple[str, ...] = tuple(t.function for t in TASKS)

# Errors the Task states retry (with backoff); everything else goes to RecordFailure.
RETRIED_ERRORS: tuple[str, ...] = (
    "TransientError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
)
