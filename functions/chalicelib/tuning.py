"""Hyperparameter tuning: the trial planner and the state machine's tuning steps.

A tuned run loops PlanTrials → RunTrialBatch (a Map state: one trial job per item, all of a
batch at once) → PlanTrials until the budget is spent; the best trial's parameters then go
to the training job, which refits on the whole training split. PlanTrials records the last
batch's results in the trial table (``runs/<id>/tuning/trials.json``, what
``GET /runs/{id}/trials`` reads) and plans the next batch:

- grid: the cartesian product of the space (int ranges by step, float ranges at
  ``grid_points`` linear or log points, categorical choices), seeded-shuffled and cut to
  ``max_trials``;
- random: each trial drawn independently from a generator seeded by (seed, trial number);
- bayesian: optuna's TPE sampler, re-seeded from the finished trials at every batch (the
  step is stateless; constant-liar fills a batch with distinct trials).

Early stopping is median pruning across cross-validation folds (optuna's MedianPruner rule):
each trial gets, per fold, the median running mean of the earlier trials, and stops after a
fold where it is worse. A failed trial is recorded FAILED and never fails the run; a run
whose every trial failed fails at PlanTrials, naming the first reason.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import statistics
from typing import Any

from chalicelib import runs, steps
from chalicelib.errors import NotFoundError, StepError
from chalicelib.modelspec import Categorical, FloatRange, IntRange, TuningSpec
from chalicelib.ports import JobSpec
from chalicelib.runtime import Ports
from chalicelib.timeutil import now_iso

TRIAL_STATUSES = ("RUNNING", "COMPLETE", "PRUNED", "FAILED")


def trials_key(run_id: str) -> str:
    return f"runs/{run_id}/tuning/trials.json"


# --- the search space ----------------------------------------------------------------------


def _grid_values(dim: Any) -> list[Any]:
    if isinstance(dim, Categorical):
        return list(dim.choices)
    if isinstance(dim, IntRange):
        if dim.log:
            points = sorted(
                {round(math.exp(v)) for v in _linspace(math.log(dim.low), math.log(dim.high), 5)}
            )
            return [p for p in points if dim.low <= p <= dim.high]
        return list(range(dim.low, dim.high + 1, dim.step))
    assert isinstance(dim, FloatRange)
    if dim.log:
        return [
            math.exp(v) for v in _linspace(math.log(dim.low), math.log(dim.high), dim.grid_points)
        ]
    return _linspace(dim.low, dim.high, dim.grid_points)


def _linspace(low: float, high: float, n: int) -> list[float]:
    if n == 1 or low == high:
        return [low]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def grid(tuning: TuningSpec, seed: int) -> list[dict[str, Any]]:
    """Every grid point (seeded-shuffled when it has more than max_trials), cut to the budget."""
    names = sorted(tuning.space)
    points = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(_grid_values(tuning.space[n]) for n in names))
    ]
    if len(points) > tuning.max_trials:
        random.Random(seed).shuffle(points)  # noqa: S311  (a search, not a secret)
    return points[: tuning.max_trials]


def _draw(dim: Any, rng: random.Random) -> Any:
    if isinstance(dim, Categorical):
        return rng.choice(dim.choices)
    if isinstance(dim, IntRange):
        if dim.log:
            return round(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))))
        return rng.randrange(dim.low, dim.high + 1, dim.step)
    if dim.log:
        return math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
    return rng.uniform(dim.low, dim.high)


def random_point(tuning: TuningSpec, seed: int, number: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{number}")  # noqa: S311  (a search, not a secret)
    return {name: _draw(tuning.space[name], rng) for name in sorted(tuning.space)}


def _distributions(tuning: TuningSpec) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for name, dim in tuning.space.items():
        if isinstance(dim, Categorical):
            # By index: choices may be lists (hidden_layer_sizes) that optuna cannot hold.
            out[name] = optuna.distributions.CategoricalDistribution(list(range(len(dim.choices))))
        elif isinstance(dim, IntRange):
            out[name] = optuna.distributions.IntDistribution(
                dim.low, dim.high, log=dim.log, step=1 if dim.log else dim.step
            )
        else:
            out[name] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)
    return out


def _encode(tuning: TuningSpec, params: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(params)
    for name, dim in tuning.space.items():
        if isinstance(dim, Categorical) and name in params:
            encoded[name] = dim.choices.index(params[name])
    return encoded


def _decode(tuning: TuningSpec, params: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(params)
    for name, dim in tuning.space.items():
        if isinstance(dim, Categorical):
            decoded[name] = dim.choices[int(params[name])]
    return decoded


def bayesian(
    tuning: TuningSpec, seed: int, direction: str, history: list[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """The next ``count`` points of optuna's TPE search given the finished trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = _distributions(tuning)
    sampler = optuna.samplers.TPESampler(
        seed=seed + len(history),
        n_startup_trials=min(10, max(2, tuning.max_trials // 4)),
        constant_liar=True,
        multivariate=True,
    )
    study = optuna.create_study(
        direction="maximize" if direction == "maximize" else "minimize", sampler=sampler
    )
    states = {
        "COMPLETE": optuna.trial.TrialState.COMPLETE,
        "PRUNED": optuna.trial.TrialState.PRUNED,
        "FAILED": optuna.trial.TrialState.FAIL,
    }
    for trial in history:
        state = states.get(trial["status"])
        if state is None:
            continue
        if state == optuna.trial.TrialState.COMPLETE and trial.get("score") is None:
            state = optuna.trial.TrialState.FAIL  # undefined on this data: no value to learn
        complete = state == optuna.trial.TrialState.COMPLETE
        intermediate = {
            i: v for i, v in enumerate(trial.get("running_means") or []) if v is not None
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=_encode(tuning, trial["params"]),
                distributions=distributions,
                value=trial["score"] if complete else None,
                state=state,
                intermediate_values=intermediate,
            )
        )  # fmt: skip
    return [_decode(tuning, study.ask(distributions).params) for _ in range(count)]


def prune_bounds(tuning: TuningSpec, history: list[dict[str, Any]], folds: int) -> list[float]:
    """Per fold, the median running mean of earlier trials that got that far (empty before
    ``startup_trials`` trials finished, or with early stopping off)."""
    stopping = tuning.early_stopping
    if stopping is None or not stopping.enabled:
        return []
    finished = [t for t in history if t["status"] in ("COMPLETE", "PRUNED")]
    if len(finished) < stopping.startup_trials:
        return []
    bounds: list[float] = []
    for fold in range(folds - 1):
        values = [
            t["running_means"][fold]
            for t in finished
            if len(t.get("running_means") or []) > fold and t["running_means"][fold] is not None
        ]
        if not values:
            break
        bounds.append(float(statistics.median(values)))
    return bounds


def best_of(history: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    done = [t for t in history if t["status"] == "COMPLETE" and t.get("score") is not None]
    if not done:
        return None
    sign = 1 if direction == "maximize" else -1
    # Ties go to the earlier trial.
    return max(done, key=lambda t: (sign * t["score"], -t["number"]))


# --- the trial table -----------------------------------------------------------------------


def load_table(ports: Ports, run_id: str) -> dict[str, Any] | None:
    key = trials_key(run_id)
    if not ports.store.exists(key):
        return None
    table: dict[str, Any] = json.loads(ports.store.get_bytes(key))
    return table


def trials_of(ports: Ports, run_id: str) -> dict[str, Any]:
    """GET /runs/{id}/trials: every trial with its parameters, score, duration and status."""
    run = runs.get(ports, run_id)
    table = load_table(ports, run_id)
    if table is None:
        if run.get("kind", "pipeline") == "pipeline" and not run.get("tuning"):
            raise NotFoundError(f"run {run_id!r} did not tune hyperparameters")
        table = {"trials": []}
    return {"run_id": run_id, **table}


def _save(ports: Ports, run_id: str, table: dict[str, Any]) -> None:
    ports.store.put_bytes(trials_key(run_id), json.dumps(table, allow_nan=False).encode())


def _finish_trial(ctx: steps.StepContext, trial: dict[str, Any], result: dict[str, Any]) -> None:
    trial["ended_at"] = now_iso()
    if "error" in result:
        trial.update(status="FAILED", error=_error_text(result["error"]))
        return
    job = result.get("job") or {}
    if job.get("status") != "Completed":
        trial.update(
            status="FAILED",
            error=f"trial job {job.get('status', 'did not run')}: {job.get('failure_reason')}",
        )
        return
    try:
        report = json.loads(ctx.ports.store.get_bytes(f"{job['outputs']['output']}/trial.json"))
    except Exception as exc:  # a job that ended without its report counts as failed
        trial.update(status="FAILED", error=f"the trial wrote no report: {type(exc).__name__}")
        return
    trial.update(
        status=report["status"],
        score=report.get("score"),
        folds=report.get("folds"),
        running_means=report.get("running_means"),
        seconds=report.get("seconds"),
    )


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        cause = error.get("Cause", "")
        try:
            decoded = json.loads(cause)
            if isinstance(decoded, dict):
                cause = decoded.get("errorMessage", cause)
        except (TypeError, ValueError):
            pass
        return f"{error.get('Error', 'Error')}: {cause}"[:500]
    return str(error)[:500]


def batch_size(ports: Ports, tuning: TuningSpec) -> int:
    """Trials at once: the pipeline's ``parallel``, under MLPIPE_MAX_PARALLEL_TRIALS and,
    when jobs run on this machine, its cores."""
    size = min(tuning.parallel, ports.settings.max_parallel_trials)
    settings = ports.settings
    if settings.profile == "local" or settings.jobs == "local":
        size = min(size, os.cpu_count() or 1)
    return max(1, size)


# --- steps ---------------------------------------------------------------------------------


@steps.task("plan_trials")
def plan_trials(ctx: steps.StepContext) -> steps.StepResult:
    """Record the finished batch in the trial table, then plan the next one (or pick the
    best trial when the budget is spent)."""
    spec = ctx.spec
    tuning = spec.tuning
    if tuning is None:
        raise StepError("the pipeline has no tuning block")
    metric, direction = tuning.objective_for(spec.task)
    table = load_table(ctx.ports, ctx.run_id) or {
        "strategy": tuning.strategy,
        "objective": {"metric": metric, "direction": direction},
        "max_trials": tuning.max_trials,
        "trials": [],
    }
    by_number = {t["number"]: t for t in table["trials"]}
    results = {r.get("number"): r for r in ctx.event.get("trial_results") or []}
    for item in (ctx.event.get("tuning") or {}).get("batch") or []:
        trial = by_number.get(item["number"])
        if trial is not None and trial["status"] == "RUNNING":
            _finish_trial(ctx, trial, results.get(item["number"], {"error": "no result"}))
    history = table["trials"]
    planned = len(history)
    budget = tuning.max_trials
    points: list[dict[str, Any]] = []
    if tuning.strategy == "grid":
        full = grid(tuning, spec.seed)
        budget = len(full)
        points = full[planned : planned + batch_size(ctx.ports, tuning)]
    else:
        count = min(batch_size(ctx.ports, tuning), budget - planned)
        if count > 0 and tuning.strategy == "random":
            points = [random_point(tuning, spec.seed, planned + i) for i in range(count)]
        elif count > 0:
            points = bayesian(tuning, spec.seed, direction, history, count)
    folds = tuning.cv_folds
    bounds = prune_bounds(tuning, history, folds)
    batch = []
    for offset, params in enumerate(points):
        number = planned + offset
        history.append(
            {"number": number, "params": params, "status": "RUNNING", "score": None,
             "folds": None, "running_means": None, "seconds": None, "error": None,
             "started_at": now_iso(), "ended_at": None}
        )  # fmt: skip
        batch.append({"number": number, "params": params, "prune_below": bounds})
    best = best_of(history, direction)
    table["best"] = None if best is None else {k: best[k] for k in ("number", "params", "score")}
    done = not batch
    table["status"] = "COMPLETE" if done else "RUNNING"
    _save(ctx.ports, ctx.run_id, table)
    counts = {s.lower(): sum(t["status"] == s for t in history) for s in TRIAL_STATUSES}
    summary = {"strategy": tuning.strategy, "metric": metric, "direction": direction,
               "planned": len(history), "budget": budget, **counts,
               "best": table["best"]}  # fmt: skip
    if done and best is None:
        reasons = [t["error"] for t in history if t.get("error")]
        raise StepError(
            f"every one of {len(history)} trials failed; the first: "
            f"{reasons[0] if reasons else 'no reason recorded'}"
        )
    output = {
        "strategy": tuning.strategy,
        "batch": batch,
        "done": done,
        "completed": counts["complete"],
        "best": table["best"] if done else None,
    }
    return steps.StepResult(
        output,
        status="SUCCEEDED" if done else "RUNNING",
        detail={"detail": summary},
        run_fields={"tuning": summary},
    )


@steps.task("start_trial")
def start_trial(ctx: steps.StepContext) -> steps.StepResult:
    """Start one trial's job (a processing job running trial.py on the training split)."""
    spec = ctx.spec
    assert spec.tuning is not None
    trial = ctx.event["trial"]
    metric, _ = spec.tuning.objective_for(spec.task)
    arguments = steps._training_arguments(ctx)
    arguments.pop("cv-folds", None)
    arguments.pop("cv-metric", None)
    arguments.update(
        number=str(trial["number"]),
        params=json.dumps(trial["params"]),
        metric=metric,
        **{"cv-folds": str(spec.tuning.cv_folds)},
    )
    if trial.get("prune_below"):
        arguments["prune-below"] = json.dumps(trial["prune_below"])
    name = steps.job_name(ctx.run_id, f"trial{trial['number']}", 1)
    ctx.ports.jobs.start(
        JobSpec(
            name=name,
            kind="processing",
            entry_point="trial.py",
            arguments=arguments,
            inputs={"train": ctx.event["split"]["train"]},
            output_prefix=f"{ctx.prefix}/tuning/trial-{trial['number']}",
            max_runtime_seconds=steps.model_steps.job_seconds(spec, ctx.ports.settings),
        )
    )
    return steps.StepResult(
        {"name": name, "kind": "processing", "status": "InProgress", "ended": False},
        status=None,
    )


@steps.task("check_trial")
def check_trial(ctx: steps.StepContext) -> steps.StepResult:
    """Describe a trial's job; a failed or stopped trial ends its iteration (never the run)."""
    job = ctx.event["job"]
    status = ctx.ports.jobs.describe(job["name"], job["kind"])
    ended = status.status in ("Completed", "Failed", "Stopped")
    return steps.StepResult(
        {**job, "status": status.status, "outputs": status.outputs, "ended": ended,
         "failure_reason": status.failure_reason},
        status=None,
    )  # fmt: skip
