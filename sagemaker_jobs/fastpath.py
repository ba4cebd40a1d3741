"""The fast path: a model's whole scikit-learn Pipeline as one ONNX graph, served by ONNX
Runtime only where it gives the same predictions as scikit-learn.

Built by the evaluation job, which holds the fitted pipeline and the held-out split::

    report = build_fast_path(pipeline, signature, test_features, out_dir)

writes ``out_dir/model.onnx`` (only when it agrees) and ``out_dir/report.json``::

    {"runtime": "onnx" | "sklearn", "agrees": bool, "reason": str,
     "checked_rows": int, "max_abs_diff": float | null}

and never raises for a model it cannot convert: the report then says ``"sklearn"`` and why.
The model server loads the graph with :class:`OnnxPredictor` and keeps scikit-learn for
anything the report does not vouch for.

**The graph.** Two inputs, built straight from a parsed request (``mlcontract.scoring.Batch``)
without pandas: ``numeric`` (float64, ``[rows, numeric columns]``: number, integer and boolean
columns in signature order, NaN for missing) and ``text`` (string, ``[rows, text columns]``,
the :data:`MISSING_TEXT` marker for missing). The ColumnTransformer (imputers, scalers,
one-hot) is converted by skl2onnx with two replacements registered for this conversion only:
SimpleImputer becomes ``Where(IsNaN(x), statistics, x)`` computed in float64 (skl2onnx's own
imputer works in float32 and ONNX Runtime has no float64 Imputer) and, for text, one
``Where(Equal(x, MISSING_TEXT), statistics, x)`` for all columns (instead of five nodes per
column). Preprocessing therefore runs in float64, as in scikit-learn. The estimator is
converted for float64 input where ONNX Runtime runs it (linear models); tree ensembles get
float32 features behind a Cast, as scikit-learn's trees do themselves, and where scikit-learn
compares or sums in float64 (HistGradientBoosting thresholds, forest votes) the graph gets
scikit-learn's exact float64 numbers back (:data:`EXACT_TREES`). Class labels are emitted as
indices into the model's ``classes`` (metadata.json), taken as the first highest probability
like scikit-learn's argmax, so labels of any JSON type come back exactly.

**Agreement** is checked on the held-out rows plus probe rows made from them (each column
missing in turn, every column missing, an unseen category per text column): classes must be
equal on every row; regression values within ``|onnx - sklearn| <= ATOL + RTOL * |sklearn|``
(:data:`RTOL` 1e-4, :data:`ATOL` 1e-5). ``max_abs_diff`` is the largest difference of
regression values, or of class probabilities for classifiers (information only: classes
decide). A row where scikit-learn's own top two probabilities differ only by float64 rounding
can still go the other way in ONNX Runtime (its trees output float32); the reason then counts
such near-ties, and scikit-learn serves.

Imports: numpy at module level; skl2onnx/onnx only when building, onnxruntime only when
predicting, so the model server needs just numpy and onnxruntime.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

MODEL_FILE: Final = "model.onnx"
REPORT_FILE: Final = "report.json"
RTOL: Final = 1e-4
ATOL: Final = 1e-5
# Stands for a missing text value inside the graph (ONNX string tensors have no NaN). A
# request whose text equals it is served by scikit-learn (see NeedsSklearnError). No NUL:
# ONNX Runtime copies numpy strings as C strings, so "\x00..." would arrive as "".
MISSING_TEXT: Final = "\u2400mlpipe:missing\u2400"
UNSEEN_TEXT: Final = "\u2400mlpipe:unseen-category\u2400"
TEXT_TYPES: Final = frozenset({"string", "datetime"})
# Opsets pinned so a graph built today loads in the same way tomorrow (ONNX Runtime >= 1.17).
OPSET: Final = {"": 19, "ai.onnx.ml": 3}
MAX_CHECK_ROWS: Final = 20_000
PROBE_ROWS: Final = 20


class ConversionError(Exception):
    """The pipeline cannot be expressed as ONNX here; the message is the report's reason."""


class NeedsSklearnError(Exception):
    """This request must be answered by scikit-learn (its text collides with the marker)."""


def column_blocks(signature: Sequence[Mapping[str, str]]) -> tuple[list[str], list[str]]:
    """(numeric columns, text columns) in signature order: the graph's two inputs."""
    numeric = [f["name"] for f in signature if f["type"] not in TEXT_TYPES]
    text = [f["name"] for f in signature if f["type"] in TEXT_TYPES]
    return numeric, text


# --- building the graph ---------------------------------------------------------------------


def _imputer_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import StringTensorType

    first = operator.inputs[0].type
    rows = first.shape[0] if first.shape else None
    width = len(operator.raw_operator.statistics_)
    kind = StringTensorType if isinstance(first, StringTensorType) else type(first)
    operator.outputs[0].type = kind([rows, width])


def _imputer_converter(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer as Where(missing, statistics, x), in the input's own precision."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    imputer = operator.raw_operator
    stats = np.asarray(imputer.statistics_)
    source = (
        concatenate_variables(scope, operator.inputs, container)
        if len(operator.inputs) > 1
        else operator.inputs[0].full_name
    )
    mask = scope.get_unique_variable_name("missing")
    fill = scope.get_unique_variable_name("fill")
    if isinstance(operator.inputs[0].type, StringTensorType):
        marker = scope.get_unique_variable_name("missing_marker")
        container.add_initializer(marker, TensorProto.STRING, [1], [MISSING_TEXT.encode()])
        container.add_initializer(
            fill, TensorProto.STRING, [1, len(stats)], [str(v).encode() for v in stats]
        )
        container.add_node("Equal", [source, marker], [mask])
    else:
        double = isinstance(operator.inputs[0].type, DoubleTensorType)
        container.add_initializer(
            fill,
            TensorProto.DOUBLE if double else TensorProto.FLOAT,
            [1, len(stats)],
            stats.astype(np.float64 if double else np.float32).tolist(),
        )
        container.add_node("IsNaN", [source], [mask])
    container.add_node("Where", [mask, fill, source], [operator.outputs[0].full_name])


def _check_imputer(imputer: Any, text: bool) -> None:
    if getattr(imputer, "add_indicator", False):
        raise ConversionError("SimpleImputer(add_indicator=True) is not converted")
    stats = np.asarray(imputer.statistics_)
    missing = imputer.missing_values
    if not (missing is None or (isinstance(missing, float) and math.isnan(missing))):
        raise ConversionError(f"SimpleImputer(missing_values={missing!r}) is not converted")
    if text:
        if not all(isinstance(v, str) for v in stats):
            raise ConversionError("a text imputer has a non-text fill value")
    elif not np.all(np.isfinite(stats.astype(np.float64))):
        raise ConversionError("a numeric imputer has a column without a fill value")


@contextlib.contextmanager
def _skl2onnx_fixes() -> Iterator[None]:
    """skl2onnx 1.20 writes ``False`` (a bool) into an ONNX integer attribute for
    HistGradientBoosting leaves, which onnx >= 1.19 refuses. Patched for this conversion
    only; harmless once skl2onnx writes an int."""
    from skl2onnx.common import tree_ensemble

    original = getattr(tree_ensemble, "add_node", None)
    if original is None:
        yield
        return

    @functools.wraps(original)
    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def _split_pipeline(pipeline: Any) -> tuple[Any | None, Any]:
    """(ColumnTransformer or None, final estimator) of a train.py-shaped pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise ConversionError(f"the model is a {type(pipeline).__name__}, not a Pipeline")
    steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
    if not steps:
        raise ConversionError("the pipeline has no steps")
    *before, estimator = steps
    if not before:
        return None, estimator
    if len(before) != 1 or not isinstance(before[0], ColumnTransformer):
        names = ", ".join(type(s).__name__ for s in before)
        raise ConversionError(
            f"only a ColumnTransformer before the estimator is converted ({names})"
        )
    return before[0], estimator


def _split_pipeline_or_none(pipeline: Any) -> tuple[Any | None, Any | None]:
    try:
        return _split_pipeline(pipeline)
    except ConversionError:
        return None, None


def _positional_preprocessor(transformer: Any, numeric: list[str], text: list[str]) -> Any:
    """A copy of the fitted ColumnTransformer that selects columns by position in
    ``numeric + text`` (how skl2onnx maps columns onto several graph inputs)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    position = {name: i for i, name in enumerate(numeric + text)}
    copied = copy.deepcopy(transformer)
    remainder = [t for t in copied.transformers_ if t[0] == "remainder"]
    if remainder and remainder[0][1] != "drop" and len(remainder[0][2]):
        raise ConversionError("a ColumnTransformer remainder that is not dropped is not converted")
    rewritten = []
    for name, step, columns in copied.transformers_:
        if name == "remainder" or step == "drop":
            continue
        if isinstance(columns, str):
            columns = [columns]
        if not isinstance(columns, list | tuple | np.ndarray) or not all(
            isinstance(c, str) for c in columns
        ):
            raise ConversionError(
                f"transformer {name!r} selects columns by something other than name"
            )
        unknown = [c for c in columns if c not in position]
        if unknown:
            raise ConversionError(
                f"transformer {name!r} uses columns outside the signature: {unknown}"
            )
        kinds = {c in text for c in columns}
        if len(kinds) > 1:
            raise ConversionError(f"transformer {name!r} mixes text and numeric columns")
        inner = step.steps if isinstance(step, Pipeline) else [(name, step)]
        for _, piece in inner:
            if isinstance(piece, SimpleImputer):
                _check_imputer(piece, text=kinds == {True})
        rewritten.append((name, step, [position[c] for c in columns]))
    if not rewritten:
        raise ConversionError("the ColumnTransformer uses no column")
    copied.transformers_ = rewritten
    return copied


def _estimator_for_onnx(estimator: Any, task: str) -> Any:
    if task != "classification":
        return estimator
    copied = copy.deepcopy(estimator)
    try:
        copied.classes_ = np.arange(len(estimator.classes_), dtype=np.int64)
    except AttributeError as exc:  # e.g. a read-only property
        raise ConversionError(
            f"cannot relabel classes of {type(estimator).__name__}: {exc}"
        ) from None
    return copied


def _estimator_options(estimator: Any, task: str) -> dict[int, dict[str, Any]] | None:
    if task != "classification":
        return None
    return {id(estimator): {"zipmap": False}}


def to_onnx(
    pipeline: Any, signature: Sequence[Mapping[str, str]], task: str, estimator_dtype: str
) -> Any:
    """The pipeline as one ONNX ModelProto (see the module docstring); ``estimator_dtype``
    is ``"double"`` or ``"float"``. Raises ConversionError."""
    import onnx
    from onnx import TensorProto, compose, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
    from sklearn.impute import SimpleImputer

    numeric, text = column_blocks(signature)
    transformer, estimator = _split_pipeline(pipeline)
    if transformer is None and text:
        raise ConversionError("text columns need a ColumnTransformer to encode them")
    inputs: list[tuple[str, Any]] = []
    if numeric:
        inputs.append(("numeric", DoubleTensorType([None, len(numeric)])))
    if text:
        inputs.append(("text", StringTensorType([None, len(text)])))

    est_type = DoubleTensorType if estimator_dtype == "double" else FloatTensorType
    try:
        with _skl2onnx_fixes():
            if transformer is not None:
                preprocessor = _positional_preprocessor(transformer, numeric, text)
                pre = convert_sklearn(
                    preprocessor,
                    initial_types=inputs,
                    target_opset=OPSET,
                    custom_conversion_functions={SimpleImputer: _imputer_converter},
                    custom_shape_calculators={SimpleImputer: _imputer_shape},
                    options=_scaler_options(preprocessor),
                )
                width = pre.graph.output[0].type.tensor_type.shape.dim[1].dim_value
                if not width:
                    raise ConversionError("the preprocessing output width is unknown")
            else:
                width = len(numeric)
                pre = _identity_model("numeric", len(numeric))
            relabelled = _estimator_for_onnx(estimator, task)
            est = convert_sklearn(
                relabelled,
                initial_types=[("features", est_type([None, width]))],
                target_opset=OPSET,
                options=_estimator_options(relabelled, task),
            )
    except ConversionError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise ConversionError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {type(exc).__name__}: {message}"
        ) from None

    if estimator_dtype == "double" and any(n.op_type in _TREE_OPS for n in est.graph.node):
        # Float64 features against float32 thresholds: neither scikit-learn's float32 nor
        # its float64 comparison. The float32 candidate is the faithful one.
        raise ConversionError("tree thresholds are float32: float64 input does not apply")
    # Join the two graphs: preprocessing output (float64) -> [Cast] -> estimator input.
    pre_out = pre.graph.output[0].name
    if estimator_dtype == "float" and not _exact_tree_ensemble(est, estimator):
        cast_out = f"{pre_out}_float"
        pre.graph.node.append(helper.make_node("Cast", [pre_out], [cast_out], to=TensorProto.FLOAT))
        del pre.graph.output[:]
        pre.graph.output.append(
            helper.make_tensor_value_info(cast_out, TensorProto.FLOAT, [None, width])
        )
        pre_out = cast_out
    est = compose.add_prefix(est, "est_")
    _align_opsets(pre, est)
    merged = compose.merge_models(pre, est, io_map=[(pre_out, "est_features")])
    names = ["label", "probabilities"] if task == "classification" else ["prediction"]
    for output, name in zip(merged.graph.output, names, strict=False):
        _rename(merged.graph, output.name, name)
    if task == "classification" and len(merged.graph.output) > 1:
        _label_from_probabilities(merged.graph)
    merged.doc_string = "mlpipe fast path: the whole scikit-learn pipeline (see fastpath.py)"
    onnx.checker.check_model(merged)
    return merged


@dataclass(frozen=True)
class ExactTrees:
    """scikit-learn's own float64 numbers for a tree ensemble, by ONNX tree id and node ids
    (vectorised per tree). ``threshold(tree, nodes)``; ``weight(tree, nodes, targets)`` or
    None to keep skl2onnx's; ``float32_features``: scikit-learn casts the features to
    float32 before comparing."""

    threshold: Callable[[int, np.ndarray], np.ndarray]
    weight: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None
    float32_features: bool


def _hist_gradient_boosting(estimator: Any) -> ExactTrees | None:
    predictors = getattr(estimator, "_predictors", None)
    if not predictors or not predictors[0]:
        return None
    per_iteration = len(predictors[0])

    def threshold(tree: int, nodes: np.ndarray) -> np.ndarray:
        iteration, k = divmod(tree, per_iteration)
        return np.asarray(predictors[iteration][k].nodes["num_threshold"][nodes], np.float64)

    return ExactTrees(threshold, None, float32_features=False)


def _forest(estimator: Any) -> ExactTrees | None:
    trees = list(getattr(estimator, "estimators_", None) or [])
    if not trees or not all(hasattr(t, "tree_") for t in trees):
        return None
    count = len(trees)
    classifier = hasattr(estimator, "classes_")

    def threshold(tree: int, nodes: np.ndarray) -> np.ndarray:
        return np.asarray(trees[tree].tree_.threshold[nodes], np.float64)

    def weight(tree: int, nodes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        value = np.asarray(trees[tree].tree_.value[nodes, 0], np.float64)
        share = value[np.arange(len(nodes)), targets]
        if classifier:
            share = share / value.sum(axis=1)
        return share / count

    return ExactTrees(threshold, weight, float32_features=True)


def _per_tree(trees: np.ndarray, fn: Callable[..., np.ndarray], *columns: np.ndarray) -> np.ndarray:
    """``fn(tree, *columns restricted to that tree)`` for every tree, in the original order."""
    out = np.zeros(len(trees), dtype=np.float64)
    if not len(trees):
        return out
    order = np.argsort(trees, kind="stable")
    bounds = np.flatnonzero(np.diff(trees[order])) + 1
    for chunk in np.split(order, bounds):
        out[chunk] = fn(int(trees[chunk[0]]), *(c[chunk] for c in columns))
    return out


# skl2onnx writes tree thresholds and leaf weights as float32 and ONNX Runtime then sums
# votes in float32, where scikit-learn compares with float64 thresholds and sums in float64.
# A value sitting on a threshold (e.g. an imputed median on a median split) then takes the
# other branch, and a tied vote (7 trees against 7) is broken by rounding. For these
# estimators the exact numbers are put back (ai.onnx.ml 3 ``*_as_tensor`` attributes, which
# also make ONNX Runtime compare and sum in float64) and the features arrive in the
# precision scikit-learn compares them in. Sanity-checked against what skl2onnx wrote.
EXACT_TREES: Final[dict[str, Callable[[Any], ExactTrees | None]]] = {
    "HistGradientBoostingClassifier": _hist_gradient_boosting,
    "HistGradientBoostingRegressor": _hist_gradient_boosting,
    "RandomForestClassifier": _forest,
    "RandomForestRegressor": _forest,
    "ExtraTreesClassifier": _forest,
    "ExtraTreesRegressor": _forest,
}
_TREE_OPS: Final = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})


def _close_float32(exact: np.ndarray, written: np.ndarray) -> bool:
    """skl2onnx may move a threshold one float32 step to keep float32 comparisons exact."""
    rounded = exact.astype(np.float32)
    up = np.nextafter(rounded, np.float32(np.inf))
    down = np.nextafter(rounded, np.float32(-np.inf))
    return bool(np.all((written == rounded) | (written == up) | (written == down)))


def _exact_tree_ensemble(model: Any, estimator: Any) -> bool:
    """Give the estimator graph's tree ensemble scikit-learn's float64 thresholds and weights
    (see EXACT_TREES). True when the graph input became float64 (no Cast to float32 needed
    in front of it); False when it still takes float32 (refined or left as it was)."""
    from onnx import TensorProto, helper, numpy_helper

    source = EXACT_TREES.get(type(estimator).__name__)
    exact = source(estimator) if source is not None else None
    trees = [n for n in model.graph.node if n.op_type in _TREE_OPS]
    graph_input = model.graph.input[0].name
    consumers = [n for n in model.graph.node if graph_input in n.input]
    if exact is None or len(trees) != 1 or consumers != trees:
        return False
    node = trees[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    try:
        thresholds = _per_tree(
            np.asarray(attrs["nodes_treeids"], np.int64),
            exact.threshold,
            np.asarray(attrs["nodes_nodeids"], np.int64),
        )
        thresholds[np.asarray(attrs["nodes_modes"]) == b"LEAF"] = 0.0
        weights = None
        if exact.weight is not None:
            targets = np.asarray(attrs[f"{prefix}_ids"], np.int64)
            # A binary classifier is written as one score: the second class's.
            binary = prefix == "class" and len(getattr(estimator, "classes_", ())) == 2
            if binary and len(np.unique(targets)) == 1:
                targets = np.ones_like(targets)
            weights = _per_tree(
                np.asarray(attrs[f"{prefix}_treeids"], np.int64),
                exact.weight,
                np.asarray(attrs[f"{prefix}_nodeids"], np.int64),
                targets,
            )
    except (IndexError, KeyError, ValueError, ZeroDivisionError):
        return False
    # Only if these are the trees skl2onnx wrote: same numbers up to float32 rounding.
    if not _close_float32(thresholds, np.asarray(attrs["nodes_values"], dtype=np.float32)):
        return False
    written_weights = np.asarray(attrs.get(f"{prefix}_weights", []), dtype=np.float32)
    if weights is not None and not np.array_equal(weights.astype(np.float32), written_weights):
        return False
    replaced = {"nodes_values"} | ({f"{prefix}_weights"} if weights is not None else set())
    kept = [a for a in node.attribute if a.name not in replaced]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(
        helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(thresholds))
    )
    if weights is not None:
        node.attribute.append(
            helper.make_attribute(f"{prefix}_weights_as_tensor", numpy_helper.from_array(weights))
        )
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml" and opset.version < 3:
            opset.version = 3
    if exact.float32_features:  # float32 features (the Cast in front), compared in float64
        widened = f"{graph_input}_float64"
        node.input[:] = [widened if i == graph_input else i for i in node.input]
        model.graph.node.insert(
            0, helper.make_node("Cast", [graph_input], [widened], to=TensorProto.DOUBLE)
        )
        return False
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    return True


def _scaler_options(preprocessor: Any) -> dict[int, dict[str, Any]]:
    """True division for StandardScaler, as scikit-learn computes it."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    options: dict[int, dict[str, Any]] = {}
    for _, step, _ in preprocessor.transformers_:
        inner = step.steps if isinstance(step, Pipeline) else [("", step)]
        for _, piece in inner:
            if isinstance(piece, StandardScaler):
                options[id(piece)] = {"div": "div"}
    return options


def _identity_model(name: str, width: int) -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["features_double"])],
        "identity",
        [helper.make_tensor_value_info(name, TensorProto.DOUBLE, [None, width])],
        [helper.make_tensor_value_info("features_double", TensorProto.DOUBLE, [None, width])],
    )
    opsets = [helper.make_opsetid(domain, version) for domain, version in OPSET.items()]
    return helper.make_model(graph, opset_imports=opsets)


def _align_opsets(first: Any, second: Any) -> None:
    """merge_models needs equal IR versions and opset imports."""
    versions: dict[str, int] = {}
    for model in (first, second):
        for opset in model.opset_import:
            versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    ir = max(first.ir_version, second.ir_version)
    for model in (first, second):
        model.ir_version = ir
        del model.opset_import[:]
        for domain, version in sorted(versions.items()):
            entry = model.opset_import.add()
            entry.domain = domain
            entry.version = version


def _label_from_probabilities(graph: Any) -> None:
    """label = the first class of highest probability, as scikit-learn's argmax picks it
    (ONNX Runtime's tree ensembles break exact ties, e.g. 7 votes against 7, otherwise)."""
    from onnx import TensorProto, helper

    _rename(graph, "label", "estimator_label")
    kept = [o for o in graph.output if o.name != "estimator_label"]
    del graph.output[:]
    graph.output.extend(kept)
    graph.node.append(
        helper.make_node(
            "ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0, select_last_index=0
        )
    )
    graph.output.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, [None]))


def _rename(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for output in graph.output:
        if output.name == old:
            output.name = new


# --- running the graph ------------------------------------------------------------------------


def session_options() -> Any:
    """One thread, no spinning: a model server answers one request at a time per process
    and shares the machine with others."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxPredictor:
    """Predictions from the fast-path graph for column-oriented rows (a scoring.Batch's
    ``columns``, or a frame's columns), as plain Python values."""

    def __init__(
        self,
        model: bytes | Path,
        signature: Sequence[Mapping[str, str]],
        task: str,
        classes: Sequence[Any] | None,
    ) -> None:
        import onnxruntime as ort

        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, session_options(), providers=["CPUExecutionProvider"]
        )
        self.numeric, self.text = column_blocks(signature)
        self.task = task
        self.classes = list(classes) if classes is not None else None
        if task == "classification" and not self.classes:
            raise ValueError("a classifier's fast path needs the model's classes")
        names = {o.name for o in self.session.get_outputs()}
        self._output = "label" if task == "classification" else "prediction"
        if self._output not in names:
            raise ValueError(f"the fast-path graph has no {self._output!r} output")
        self._run = self.session.run

    def feeds(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> dict[str, np.ndarray]:
        """The graph's inputs: no DataFrame, one numpy call per block."""
        feeds: dict[str, np.ndarray] = {}
        if self.numeric:
            if n_rows == 1:
                block = np.array([[columns[c][0] for c in self.numeric]], dtype=np.float64)
            else:
                block = np.array([columns[c] for c in self.numeric], dtype=np.float64).T.copy()
            feeds["numeric"] = block
        if self.text:
            rows = [[_text(columns[c][i]) for c in self.text] for i in range(n_rows)]
            feeds["text"] = np.array(rows, dtype=object).reshape(n_rows, len(self.text))
        return feeds

    def predict_columns(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> list[Any]:
        out = self._run([self._output], self.feeds(columns, n_rows))[0]
        if self.classes is not None and self.task == "classification":
            classes = self.classes
            return [classes[i] for i in out.tolist()]
        return [float(v) for v in out.ravel().tolist()]

    def predict(self, batch: Any) -> list[Any]:
        """Predictions for a ``mlcontract.scoring.Batch``."""
        return self.predict_columns(batch.columns, batch.n_rows)

    def run_all(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> list[np.ndarray]:
        return list(self._run(None, self.feeds(columns, n_rows)))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_TEXT
    if value == MISSING_TEXT:
        raise NeedsSklearnError("the request contains the fast path's missing-text marker")
    return value if isinstance(value, str) else str(value)


# --- agreement ------------------------------------------------------------------------------


def probe_frame(test_frame: Any, signature: Sequence[Mapping[str, str]]) -> Any:
    """The held-out rows (at most MAX_CHECK_ROWS) plus probes: each column missing in turn,
    every column missing, and an unseen category per text column."""
    import pandas as pd

    numeric, text = column_blocks(signature)
    base = test_frame[[f["name"] for f in signature]].head(MAX_CHECK_ROWS).reset_index(drop=True)
    head = base.head(PROBE_ROWS)
    probes = [base]
    for name in numeric + text:
        probe = head.copy()
        probe[name] = np.nan if name in numeric else None
        probes.append(probe)
    if len(head):
        empty = head.head(1).copy()
        for name in numeric:
            empty[name] = np.nan
        for name in text:
            empty[name] = None
        probes.append(empty)
        for name in text:
            probe = head.head(3).copy()
            probe[name] = UNSEEN_TEXT
            probes.append(probe)
    frame = pd.concat(probes, ignore_index=True)
    for name in text:  # object columns with NaN for missing: what the pipeline is fitted on
        values = frame[name].astype(object).to_numpy().copy()
        values[pd.isna(values)] = np.nan
        frame[name] = pd.Series(values, dtype=object)
    for name in numeric:
        frame[name] = frame[name].astype(np.float64)
    return frame


def check_agreement(
    predictor: OnnxPredictor, pipeline: Any, frame: Any, task: str
) -> tuple[bool, str, float | None]:
    """(agrees, reason, max_abs_diff) of the graph against ``pipeline`` on ``frame``."""
    columns = {name: frame[name].tolist() for name in predictor.numeric + predictor.text}
    outputs = predictor.run_all(columns, len(frame))
    expected = np.asarray(pipeline.predict(frame))
    if task == "classification":
        classes = np.asarray(pipeline.classes_)
        labels = classes[np.asarray(outputs[0]).astype(np.int64).ravel()]
        diff: float | None = None
        proba = None
        if hasattr(pipeline, "predict_proba") and len(outputs) > 1:
            proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
            diff = float(np.max(np.abs(np.asarray(outputs[1], dtype=np.float64) - proba)))
        wrong = labels != expected
        if wrong.any():
            why = f"{int(wrong.sum())} of {len(frame)} rows get another class"
            if proba is not None and proba.shape[1] > 1:
                top = np.sort(proba[wrong], axis=1)
                ties = int(np.sum(top[:, -1] - top[:, -2] < 1e-6))
                if ties:  # scikit-learn's own choice there is float64 rounding
                    why += f" ({ties} of them near-ties of scikit-learn's probabilities)"
            return False, why, diff
        return True, "", diff
    got = np.asarray(outputs[0], dtype=np.float64).ravel()
    want = expected.astype(np.float64).ravel()
    gap = np.abs(got - want)
    worst = float(np.max(gap)) if len(gap) else 0.0
    outside = int(np.sum(~(gap <= ATOL + RTOL * np.abs(want))))
    if outside:
        return (
            False,
            f"{outside} of {len(frame)} rows differ by more than rtol={RTOL}, atol={ATOL} "
            f"(max {worst:.3g})",
            worst,
        )
    return True, "", worst


def _report(
    runtime: str, agrees: bool, reason: str, checked: int, diff: float | None
) -> dict[str, Any]:
    finite = diff if diff is None or math.isfinite(diff) else None
    return {
        "runtime": runtime,
        "agrees": agrees,
        "reason": reason,
        "checked_rows": checked,
        "max_abs_diff": finite,
    }


def _write(out_dir: Path, report: dict[str, Any], model: bytes | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    if model is not None:
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(model)
        os.replace(tmp, target)
    else:
        target.unlink(missing_ok=True)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def build_fast_path(
    pipeline: Any,
    signature: Sequence[Mapping[str, str]],
    test_frame: Any,
    out_dir: Path,
    *,
    task: str | None = None,
    classes: Sequence[Any] | None = None,
    converter: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Convert, check against scikit-learn on ``test_frame`` (+ probes), write the outputs;
    returns the report. ``task`` defaults from the pipeline (classes_ -> classification);
    ``classes`` (JSON labels) default to the pipeline's. ``converter`` replaces
    :func:`to_onnx` (tests)."""
    out_dir = Path(out_dir)
    if task is None:
        task = "classification" if hasattr(pipeline, "classes_") else "regression"
    if task == "classification" and classes is None:
        classes = [v.item() if isinstance(v, np.generic) else v for v in pipeline.classes_]
    convert = converter or to_onnx
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        report = _report(
            "sklearn", False, f"fast path libraries are not installed ({exc})", 0, None
        )
        _write(out_dir, report, None)
        return report

    frame = probe_frame(test_frame, signature)
    reasons: list[str] = []
    checked, last_diff = 0, None
    # float64 into the estimator where ONNX Runtime runs it (linear models); float32 (behind a
    # Cast, with exact thresholds, see EXACT_TREES) for tree ensembles.
    _, estimator = _split_pipeline_or_none(pipeline)
    tree_like = any(hasattr(estimator, a) for a in ("estimators_", "_predictors", "tree_"))
    # (float64 features against a tree ensemble's float32 thresholds are never faithful.)
    for dtype in ("float",) if tree_like else ("double", "float"):
        try:
            model = convert(pipeline, signature, task, dtype).SerializeToString()
            predictor = OnnxPredictor(model, signature, task, classes)
            agrees, why, diff = check_agreement(predictor, pipeline, frame, task)
        except ConversionError as exc:
            reasons.append(f"{dtype}: {exc}")
            continue
        except Exception as exc:  # ONNX Runtime refusing a graph, or a failing run
            message = " ".join(str(exc).split())[:300]
            reasons.append(f"{dtype}: {type(exc).__name__}: {message}")
            continue
        checked, last_diff = len(frame), diff
        if agrees:
            report = _report("onnx", True, "", len(frame), diff)
            _write(out_dir, report, model)
            return report
        reasons.append(f"{dtype}: {why}")
    report = _report("sklearn", False, "; ".join(reasons), checked, last_diff)
    _write(out_dir, report, None)
    return report


def read_report(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None
