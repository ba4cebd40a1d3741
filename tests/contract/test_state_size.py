"""Everything that flows through the Step Functions state is a reference: a run over a
10,000-column dataset with a 2,000-name preprocessing step keeps every state far below the
256 KiB limit (States.DataLimitExceeded), and every metadata record below DynamoDB's 400 KB.

The steps run their real handlers over the in-memory ports (tests/fakes.py); the state is
assembled as the ASL does it (each Task's result at its ResultPath).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from chalicelib import offload, runs, runtime, steps, tables, workflow
from chalicelib.ports import Write
from chalicelib.schemas import PipelineCreate, RunCreate
from tests.fakes import FakeJobs, make_ports

STATE_LIMIT = 256 * 1024  # Step Functions: input/output of a state, UTF-8 bytes
COLUMNS = 10_000
NAME = "a_feature_column_with_a_descriptive_and_fairly_long_name_{:05d}"


@pytest.fixture
def ports() -> Any:
    wired = make_ports()
    runtime.install(wired)
    yield wired
    runtime.install(None)


def _wide_dataset(ports: Any) -> None:
    rng = np.random.default_rng(0)
    data = {NAME.format(i): rng.normal(size=30) for i in range(1000)}
    # Most columns are empty: CleanData drops them, and used to put every name in the state.
    data |= {NAME.format(i): np.full(30, np.nan) for i in range(1000, COLUMNS)}
    data["label"] = np.where(rng.normal(size=30) > 0, "yes", "no")
    frame = pd.DataFrame(data)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    key = "datasets/wide/v00000001/abc/data.parquet"
    ports.store.put_bytes(key, buf.getvalue())
    schema = [{"name": c, "type": "number"} for c in frame.columns[:-1]]
    record = {"name": "wide", "version": 1, "status": "READY", "key": key, "rows": 30,
              "columns": len(schema) + 1, "schema": [*schema, {"name": "label", "type": "string"}],
              "created_at": "2026-01-01T00:00:00Z", "profile": {"columns": []}}  # fmt: skip
    record = offload.offload(ports.store, record, "schema", "datasets/wide/v00000001/abc/s.json")
    ports.metadata.put(Write(tables.dataset_versions("wide"), tables.version_sk(1), record, 0))
    ports.metadata.put(Write(tables.DATASETS, "wide", {"name": "wide", "latest_version": 1}, 0))


def _size(state: dict[str, Any]) -> int:
    return len(json.dumps(state).encode())


def test_a_10k_column_run_keeps_every_state_far_below_256_kib(ports: Any) -> None:
    _wide_dataset(ports)
    spec = PipelineCreate.model_validate(
        {
            "name": "wide-rf",
            "dataset": {"name": "wide"},
            "target": "label",
            "task": "classification",
            # 2,000 long names: ~140 KB of spec that must not ride in the execution input.
            "preprocessing": [  # at most 1,000 columns per step
                {"op": "drop_columns", "columns": [NAME.format(i) for i in range(at, at + 1000)]}
                for at in range(8000, COLUMNS, 1000)
            ],
            "model": {"algorithm": "random_forest", "hyperparameters": {}},
            "deployment": {"endpoint": "wide-ep"},
        }
    )
    record = {**spec.model_dump(mode="json"), "created_at": "2026-01-01T00:00:00Z"}
    ports.metadata.put(Write(tables.PIPELINES, spec.name, record, 0))
    run_id = runs.start(ports, spec.name, RunCreate())["run_id"]
    (state,) = ports.orchestrator.executions.values()
    sizes = {"input": _size(state)}

    def run(state_name: str) -> None:
        task = workflow.BY_STATE[state_name]
        result = steps.HANDLERS[task.function](json.loads(json.dumps(state)), None)
        state[task.result_path.removeprefix("$.")] = result
        sizes[state_name] = _size(state)

    for name in ("LoadDataset", "CleanData", "SplitTrainTest", "StartTrainingJob"):
        run(name)
    jobs: FakeJobs = ports.jobs
    train = state["train_job"]["name"]
    jobs.finish(train, model=f"runs/{run_id}/model/model.tar.gz")
    run("CheckTrainingJob")
    run("StartEvaluationJob")
    evaluation = f"runs/{run_id}/evaluation"
    signature = [{"name": NAME.format(i), "type": "number"} for i in range(1000)]
    ports.store.put_bytes(
        f"{evaluation}/evaluation.json",
        json.dumps(
            {"metrics": {"accuracy": 0.9}, "rows": 6,
             "artefact": {"sha256": "f" * 64, "signature": signature * 10,
                          "classes": [f"class-{i}" for i in range(5000)]}}
        ).encode(),
    )  # fmt: skip
    jobs.finish(state["eval_job"]["name"], output=evaluation)
    for name in ("CheckEvaluationJob", "ApplyQualityGate", "RegisterModelVersion"):
        run(name)

    assert max(sizes.values()) < STATE_LIMIT // 8, sizes  # and independent of the columns
    assert state["clean"]["empty_columns_dropped"] == COLUMNS - 1000 - 2000
    dropped = json.loads(ports.store.get_bytes(state["clean"]["report_key"]))
    assert len(dropped["empty_columns_dropped"]) == COLUMNS - 1000 - 2000  # kept, by reference
    version = ports.metadata.get(tables.model_versions("wide-rf"), tables.version_sk(1))
    assert "signature" not in version.item and version.item["signature_key"]  # offloaded
    from chalicelib import registry

    assert len(registry.get_version(ports, "wide-rf", 1)["signature"]) == 10_000
    assert runs.get(ports, run_id)["steps"][1]["status"] == "SUCCEEDED"


def test_a_wide_dataset_version_record_is_offloaded_below_the_item_limit(ports: Any) -> None:
    from chalicelib import datasets

    header = ",".join("c" * 200 + f"{i:05d}" for i in range(1999)) + ",y"
    rows = "\n".join(",".join(["1"] * 1999) + f",{i % 2}" for i in range(3))
    out = datasets.upload(ports, "wide", f"{header}\n{rows}\n".encode(), "text/csv")
    assert out["columns"] == 2000
    stored = ports.metadata.get(tables.dataset_versions("wide"), tables.version_sk(1)).item
    assert "schema" not in stored and len(json.dumps(stored)) < 4000
    assert len(datasets.get_version(ports, "wide", 1)["schema"]) == 2000


def test_a_pipeline_spec_past_the_item_limit_is_a_413(ports: Any) -> None:
    from chalicelib import datasets, pipelines
    from chalicelib.errors import PayloadTooLargeError

    names = [f"{i:04d}" + "c" * 240 for i in range(1999)]  # ~490 KB of legal names
    header = ",".join([*names, "label"])
    rows = "\n".join(",".join(["1"] * 1999 + [str(i % 2)]) for i in range(12))
    datasets.upload(ports, "long", f"{header}\n{rows}\n".encode(), "text/csv")
    spec = PipelineCreate.model_validate({
        "name": "huge", "dataset": {"name": "long"}, "target": "label",
        "task": "classification", "model": {"algorithm": "random_forest"},
        "preprocessing": [  # at most 1,000 columns per step
            {"op": "drop_columns", "columns": names[at : at + 1000]} for at in (0, 1000)
        ],
    })  # fmt: skip
    with pytest.raises(PayloadTooLargeError, match="too large"):
        pipelines.create(ports, spec)
