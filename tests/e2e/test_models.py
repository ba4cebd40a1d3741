"""Models through the REST API on the embedded stack (issue "Models"): resource caps, grid /
random / Bayesian tuning fanned out by the Map state with a trial table, training options and
provenance, the evaluation report, a worse challenger rejected and not deployed, the MLflow
export loaded by mlflow.pyfunc, and runs logged to an MLflow tracking store. Small data and
few trials: the point is the behaviour, not the models."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from iac.local import stack
from tests.e2e.conftest import Api, classification_csv

FEATURES = ["petal/len", "sepal width", "colour", "count"]


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def tracking_uri(mlflow_dir: Path) -> str:
    """A real MLflow tracking store backed by SQLite."""
    return f"sqlite:///{mlflow_dir / 'mlflow.db'}"


@pytest.fixture(scope="module")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory, tracking_uri: str, mlflow_dir: Path
) -> Iterator[stack.LocalStack]:
    running = stack.start(
        tmp_path_factory.mktemp("mlpipe-data"),
        port=0,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_root=(mlflow_dir / "artifacts").as_uri(),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dataset(api: Api) -> str:
    api.ok(
        "POST",
        "/datasets",
        {"name": "iris-ish", "source": {"type": "inline", "data": classification_csv(240)}},
    )
    return "iris-ish"


def _pipeline(name: str, dataset: str, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "dataset": {"name": dataset},
        "target": "label",
        "task": "classification",
        "model": {"algorithm": "random_forest", "hyperparameters": {"n_estimators": 10}},
    }
    spec.update(over)
    return spec


def _run(api: Api, spec: dict[str, Any]) -> dict[str, Any]:
    api.ok("POST", "/pipelines", spec)
    started = api.ok("POST", f"/pipelines/{spec['name']}/runs", {})
    return api.wait_run(started["run_id"], timeout=300)


def test_caps_refuse_a_pipeline_naming_the_parameter_and_the_cap(api: Api, dataset: str) -> None:
    status, body = api.call(
        "POST",
        "/pipelines",
        _pipeline("too-big", dataset, model={"algorithm": "random_forest",
                                             "hyperparameters": {"n_estimators": 50000}}),
    )  # fmt: skip
    assert status == 400, body
    assert (
        "'n_estimators' = 50000 is past the cap of 2000 (MLPIPE_MAX_N_ESTIMATORS)"
        in (body["Message"])
    )
    status, body = api.call(
        "POST",
        "/pipelines",
        _pipeline(
            "too-deep", dataset,
            tuning={"strategy": "random", "max_trials": 2,
                    "space": {"max_depth": {"type": "int", "low": 2, "high": 500}}},
        ),
    )  # fmt: skip
    assert status == 400 and "MLPIPE_MAX_DEPTH" in body["Message"], body
    assert api.call("GET", "/pipelines/too-big")[0] == 404  # nothing half-written


def test_catalog_lists_every_algorithm(api: Api) -> None:
    algorithms = api.ok("GET", "/algorithms")["algorithms"]
    assert len(algorithms) >= 14
    assert algorithms["logistic_regression"]["classification"]["penalty"]["default"] == "l2"
    assert "hidden_layer_sizes" in algorithms["mlp"]["regression"]


@pytest.fixture(scope="module")
def grid_run(api: Api, dataset: str) -> dict[str, Any]:
    # l1 with the lbfgs solver fails at fit time: two of the four trials fail, the run not.
    return _run(
        api,
        _pipeline(
            "tuned-grid", dataset,
            model={"algorithm": "logistic_regression", "hyperparameters": {"solver": "lbfgs"}},
            training={"cv_folds": 3, "class_weight": "balanced"},
            tuning={"strategy": "grid", "parallel": 2, "max_trials": 10, "cv_folds": 2,
                    "objective": {"metric": "f1_macro"},
                    "space": {"penalty": {"type": "categorical", "choices": ["l1", "l2"]},
                              "C": {"type": "float", "low": 0.1, "high": 10.0, "log": True,
                                    "grid_points": 2}}},
        ),
    )  # fmt: skip


def test_grid_tuning_runs_trials_in_map_batches_and_survives_failed_trials(
    api: Api, grid_run: dict[str, Any]
) -> None:
    assert grid_run["status"] == "SUCCEEDED", grid_run["error"]
    names = [s["name"] for s in grid_run["steps"]]
    assert names.index("tune") == names.index("train") - 1
    table = api.ok("GET", f"/runs/{grid_run['run_id']}/trials")
    trials = table["trials"]
    assert len(trials) == 4 and table["status"] == "COMPLETE"
    by_penalty: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        by_penalty.setdefault(trial["params"]["penalty"], []).append(trial)
        assert trial["ended_at"] and trial["started_at"] <= trial["ended_at"]
    assert {t["status"] for t in by_penalty["l1"]} == {"FAILED"}
    assert all("penalty" in t["error"] or "l1" in t["error"] for t in by_penalty["l1"])
    assert {t["status"] for t in by_penalty["l2"]} == {"COMPLETE"}
    for trial in by_penalty["l2"]:
        assert len(trial["folds"]) == 2 and 0 <= trial["score"] <= 1 and trial["seconds"] > 0
    best = max(by_penalty["l2"], key=lambda t: t["score"])
    assert table["best"]["number"] == best["number"]
    # The trials ran as a Map state, two at once.
    events = api.events(grid_run["run_id"])
    map_starts = [e for e in events if e["type"] == "MapStateStarted"]
    assert len(map_starts) == 2
    # The best trial became the model version, refitted with the training options.
    version = api.ok("GET", f"/models/tuned-grid/versions/{grid_run['model']['version']}")
    assert version["hyperparameters"] == {"solver": "lbfgs", **best["params"]}
    assert version["tuning"]["best_trial"] == best["number"]
    assert version["class_weight"] == "balanced"
    cv = version["cross_validation"]
    assert cv["metric"] == "f1_macro" and len(cv["folds"]) == 3
    assert cv["mean"] == pytest.approx(sum(cv["folds"]) / 3)
    assert version["effective_hyperparameters"]["C"] == pytest.approx(best["params"]["C"])
    assert version["seed"] == 42 and version["libraries"]["scikit-learn"] == "1.4.2"
    assert len(version["training_data"]["sha256"]) == 64
    assert version["data"] == {"dataset": "iris-ish", "version": 1}


def test_random_and_bayesian_tuning(api: Api, dataset: str) -> None:
    space = {
        "max_depth": {"type": "int", "low": 2, "high": 8},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 20, "log": True},
        "criterion": {"type": "categorical", "choices": ["gini", "entropy"]},
    }
    for strategy in ("random", "bayesian"):
        run = _run(
            api,
            _pipeline(
                f"tuned-{strategy}", dataset,
                tuning={"strategy": strategy, "max_trials": 5, "parallel": 2, "space": space,
                        "early_stopping": {"startup_trials": 2}},
            ),
        )  # fmt: skip
        assert run["status"] == "SUCCEEDED", (strategy, run["error"])
        trials = api.ok("GET", f"/runs/{run['run_id']}/trials")["trials"]
        assert len(trials) == 5
        assert {t["status"] for t in trials} <= {"COMPLETE", "PRUNED"}
        for trial in trials:
            assert 2 <= trial["params"]["max_depth"] <= 8
            assert trial["params"]["criterion"] in ("gini", "entropy")
        assert run["tuning"]["planned"] == 5 and run["tuning"]["best"] is not None


def test_trials_of_an_untuned_run_are_a_404(api: Api, grid_run: dict[str, Any]) -> None:
    assert api.call("GET", "/runs/nope/trials")[0] == 404


@pytest.fixture(scope="module")
def champion_runs(api: Api, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    gate = {"champion": {"metric": "accuracy", "min_improvement": 0.0}}
    deployment = {"endpoint": "champ", "alias": "production"}
    first = _run(
        api,
        _pipeline("champ-rf", dataset, model_name="champ", evaluation=gate, deployment=deployment),
    )
    # A constant-ish model: k-NN over the whole training split predicts the majority class.
    worse = _run(
        api,
        _pipeline(
            "champ-knn", dataset, model_name="champ", evaluation=gate, deployment=deployment,
            model={"algorithm": "k_nearest_neighbors", "hyperparameters": {"n_neighbors": 150}},
        ),
    )  # fmt: skip
    return first, worse


def test_a_worse_challenger_is_rejected_and_not_deployed(
    api: Api, champion_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, worse = champion_runs
    assert first["status"] == "SUCCEEDED", first["error"]
    assert worse["status"] == "SUCCEEDED", worse["error"]
    assert worse["model"] == {"name": "champ", "version": 2, "status": "REJECTED"}
    assert any("does not beat the champion v1" in n for n in worse["notes"])
    steps = {s["name"]: s["status"] for s in worse["steps"]}
    assert steps["deploy"] == "SKIPPED"
    version = api.ok("GET", "/models/champ/versions/2")
    assert version["status"] == "REJECTED"
    assert version["champion"]["champion_version"] == 1
    assert version["champion"]["candidate"] < version["champion"]["champion"]
    assert api.ok("GET", "/models/champ")["aliases"] == {"production": 1}
    endpoint = api.ok("GET", "/endpoints/champ")
    assert endpoint["model_version"] == 1 and endpoint["history"] == [1]


def test_report_per_version(api: Api, champion_runs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    report = api.ok("GET", "/models/champ/versions/1/report")
    assert report["task"] == "classification" and report["classes"] == ["no", "yes"]
    matrix = report["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == report["rows"]
    assert {c["class"] for c in report["per_class"]} == {"no", "yes"}
    assert set(report["averages"]) == {"macro", "weighted"}
    curve = report["curves"]["yes"]
    assert curve["roc"]["fpr"][0] == 0.0 and curve["roc"]["tpr"][-1] == 1.0
    assert 0.5 < report["roc_auc"] <= 1 and report["log_loss"] > 0
    assert sum(b["count"] for b in report["calibration"]) == report["rows"]
    assert api.call("GET", "/models/champ/versions/9/report")[0] == 404
    assert set(report["plots"]) == {"confusion_matrix", "roc", "pr", "calibration", "importance"}
    assert {i["feature"] for i in report["importance"]} <= set(FEATURES)
    resp = api.client.http.get(
        "/models/champ/versions/1/plots/roc", headers={"Accept": "image/png"}
    )
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    assert resp.body.startswith(b"\x89PNG\r\n\x1a\n") and len(resp.body) > 500
    assert api.call("GET", "/models/champ/versions/1/plots/nope")[0] == 404


def test_mlflow_export_loads_and_predicts_like_the_endpoint(
    api: Api, champion_runs: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    mlflow = pytest.importorskip("mlflow")
    # A binary response needs a matching Accept header (API Gateway's rule, and Chalice's).
    resp = api.client.http.get(
        "/models/champ/versions/1/export?format=mlflow", headers={"Accept": "application/zip"}
    )
    assert resp.status_code == 200, resp.body
    assert resp.headers["Content-Type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(resp.body)).extractall(tmp_path / "m")
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert [c.name for c in model.metadata.get_input_schema().inputs] == FEATURES
    frame = pd.read_csv(io.StringIO(classification_csv(20, seed=3)))[FEATURES]
    frame["petal/len"] = frame["petal/len"].fillna(0.0)
    ours = list(model.predict(frame))
    served = api.ok(
        "POST", "/endpoints/champ/invocations", {"dataframe_records": frame.to_dict("records")}
    )["predictions"]
    assert ours == served
    assert api.call("GET", "/models/champ/versions/1/export?format=onnx")[0] == 400


def test_runs_are_logged_to_the_mlflow_tracking_store(
    champion_runs: tuple[dict[str, Any], dict[str, Any]], tracking_uri: str
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("champ-rf")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.params["algorithm"] == "random_forest"
    assert run.data.params["hp.n_estimators"] == "10"
    assert 0 < run.data.metrics["accuracy"] <= 1
    assert run.data.tags["mlpipe.version"] == "1"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "report"} <= artifacts


def test_regression_report_with_residuals(api: Api) -> None:
    from tests.e2e.conftest import regression_csv

    api.ok("POST", "/datasets", {"name": "houses", "source": {"type": "inline",
                                                             "data": regression_csv(150)}})  # fmt: skip
    run = _run(
        api,
        {
            "name": "houses-mlp",
            "dataset": {"name": "houses"},
            "target": "y",
            "task": "regression",
            "model": {"algorithm": "mlp",
                      "hyperparameters": {"hidden_layer_sizes": [16, 8], "max_iter": 500}},
            "evaluation": {"metrics": ["rmse", "mape"]},
            "training": {"cv_folds": 3},
        },
    )  # fmt: skip
    assert run["status"] == "SUCCEEDED", run["error"]
    assert set(run["metrics"]) == {"rmse", "mape"}
    report = api.ok("GET", "/models/houses-mlp/versions/1/report")
    assert report["task"] == "regression" and report["rmse"] == run["metrics"]["rmse"]
    residuals = report["residuals"]
    assert sum(residuals["histogram"]["counts"]) == report["rows"]
    assert len(residuals["vs_predicted"]["predicted"]) == min(report["rows"], 101)
    assert report["cross_validation"]["metric"] == "r2"
    assert "residuals" in report["plots"]
    version = api.ok("GET", "/models/houses-mlp/versions/1")
    assert version["effective_hyperparameters"]["hidden_layer_sizes"] == [16, 8]
