"""Generate ``algorithms.json`` from the installed scikit-learn (``make catalog``).

    python sagemaker_jobs/catalog_gen.py [--check]

Reads each estimator's ``_parameter_constraints`` (the rules its own ``_validate_params``
enforces) and keeps the forms a JSON value can take. Forms JSON cannot express (callables,
array-likes, estimator objects, ...) are dropped, which only ever makes the catalog stricter
than scikit-learn, never more lenient. Never imported by the API: it needs scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import sys
from numbers import Integral, Real
from typing import Any

import sklearn
from sklearn.utils import _param_validation as pv

from mlcontract.catalog import (
    ALGORITHMS,
    CATALOG_PATH,
    ESTIMATORS,
    PLATFORM_PARAMS,
    TASKS,
    Catalog,
    Constraint,
    EstimatorSpec,
    ParamSpec,
)

# Python types whose instances a JSON value can be, by the catalog's type name.
_INSTANCE_TYPES: dict[type, str] = {
    bool: "bool",
    int: "int",
    Integral: "int",
    float: "float",
    Real: "float",
    pv.RealNotInt: "float_not_int",
    str: "str",
    dict: "dict",
    list: "list",
}

# Known constraint kinds no JSON value can satisfy meaningfully. Listed, rather than
# "anything else", so a kind added by a future scikit-learn fails generation loudly
# instead of silently vanishing from the catalog. Looked up by name because some do not
# exist in every supported scikit-learn version.
_UNREPRESENTABLE: tuple[type, ...] = tuple(
    getattr(pv, name)
    for name in (
        "_ArrayLikes",  # a JSON list is array-like, but element rules are unknowable here
        "_SparseMatrices",
        "_Callables",
        "HasMethods",
        "MissingValues",
        "_CVObjects",
        "_IterablesNotString",
        "_NanConstraint",
        "_PandasNAConstraint",
    )
    if hasattr(pv, name)
)


def _number_type(py_type: Any) -> str:
    if py_type is Integral:
        return "int"
    if py_type is Real:
        return "float"
    if py_type is pv.RealNotInt:
        return "float_not_int"
    raise ValueError(f"unexpected Interval type {py_type!r}")


def _bound(value: Any, number_type: str) -> float | None:
    # JSON has no infinity; null already means "unbounded on this side".
    if value is None or (isinstance(value, Real) and math.isinf(float(value))):
        return None
    return int(value) if number_type == "int" else float(value)


def _interval(number_type: str, left: Any, right: Any, closed: str) -> Constraint:
    return {
        "kind": "interval",
        "type": number_type,
        "left": _bound(left, number_type),
        "right": _bound(right, number_type),
        "closed": closed,
    }


def _json_scalar(value: Any) -> tuple[bool, Any]:
    """(True, JSON value) if ``value`` survives a JSON round trip unchanged, else (False, None)."""
    if value is None or isinstance(value, bool | str):
        return True, value
    if isinstance(value, Integral):
        return True, int(value)
    if isinstance(value, Real) and math.isfinite(float(value)):
        return True, float(value)
    return False, None


def _encode(raw: Any) -> list[Constraint]:
    """The JSON-expressible forms of one scikit-learn constraint (possibly none)."""
    constraint = pv.make_constraint(raw)
    if constraint.hidden:
        # Hidden = internal or not officially supported; not ours to offer users.
        return []
    if isinstance(constraint, pv.Interval):
        number_type = _number_type(constraint.type)
        return [_interval(number_type, constraint.left, constraint.right, constraint.closed)]
    if isinstance(constraint, pv.Options):
        type_name = _INSTANCE_TYPES.get(constraint.type)
        values: list[object] = []
        for option in constraint.options:
            ok, encoded = _json_scalar(option)
            # Deprecated options still work today but are about to break pipelines.
            if ok and option not in constraint.deprecated:
                values.append(encoded)
        if type_name is None or not values:
            return []
        values.sort(key=lambda v: (type(v).__name__, repr(v)))
        return [{"kind": "options", "type": type_name, "values": values}]
    if isinstance(constraint, pv._Booleans):
        return [{"kind": "type", "type": "bool"}]
    if isinstance(constraint, pv._NoneConstraint):
        return [{"kind": "null"}]
    if isinstance(constraint, pv._RandomStates):
        # The RandomState-instance form is dropped: JSON cannot carry one.
        return [_interval("int", 0, 2**32 - 1, "both"), {"kind": "null"}]
    if isinstance(constraint, pv._VerboseHelper):
        return [_interval("int", 0, None, "left"), {"kind": "type", "type": "bool"}]
    if isinstance(constraint, pv._InstancesOf):
        type_name = _INSTANCE_TYPES.get(constraint.type)
        # Other classes (tuple, RandomState, loss/criterion objects, ...) have no JSON form.
        return [] if type_name is None else [{"kind": "type", "type": type_name}]
    if isinstance(constraint, _UNREPRESENTABLE):
        return []
    raise ValueError(
        f"unknown scikit-learn constraint {constraint!s} ({type(constraint).__name__}); "
        "teach catalog_gen.py how to encode it, or list it as unrepresentable"
    )


# JSON forms scikit-learn accepts through a constraint the generator drops as a whole:
# hidden_layer_sizes is "array-like" (a list of layer widths; elements are checked by
# mlcontract.catalog and bounded by the hidden-units cap).
_EXTRA_FORMS: dict[str, list[Constraint]] = {
    "hidden_layer_sizes": [{"kind": "type", "type": "list"}],
}


def _param_spec(name: str, default: Any, raw_constraints: Any) -> ParamSpec:
    accepts: list[Constraint] = list(_EXTRA_FORMS.get(name, []))
    # "no_validation" (or no entry) means scikit-learn checks nothing, so neither can we.
    if raw_constraints != "no_validation":
        for raw in raw_constraints or []:
            for encoded in _encode(raw):
                if encoded not in accepts:
                    accepts.append(encoded)
    ok, json_default = _json_scalar(default)
    if isinstance(default, tuple) and all(isinstance(v, Integral) for v in default):
        ok, json_default = True, [int(v) for v in default]
    # A parameter on its way out (scikit-learn marks its default "deprecated") is not offered:
    # its default would read as a value to users, and setting it breaks on the next upgrade.
    deprecated = isinstance(default, str) and default == "deprecated"
    return {
        "default": json_default if ok else None,
        "accepts": accepts,
        "configurable": bool(accepts) and name not in PLATFORM_PARAMS and not deprecated,
    }


def _load_class(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _estimator_spec(dotted: str) -> EstimatorSpec:
    cls = _load_class(dotted)
    constraints = cls._parameter_constraints
    signature = inspect.signature(cls)
    return {
        "estimator": dotted,
        "params": {
            name: _param_spec(name, parameter.default, constraints.get(name))
            for name, parameter in sorted(signature.parameters.items())
        },
    }


def build_catalog() -> Catalog:
    """The catalog for the installed scikit-learn, as committed in ``algorithms.json``."""
    return {
        "sklearn_version": sklearn.__version__,
        "algorithms": {
            algorithm: {
                task: _estimator_spec(ESTIMATORS[algorithm][task])
                for task in TASKS
                if task in ESTIMATORS[algorithm]
            }
            for algorithm in ALGORITHMS
        },
    }


def render(catalog: Catalog) -> str:
    """Canonical text: sorted keys and a trailing newline keep regeneration diff-free."""
    return json.dumps(catalog, indent=1, sort_keys=True, allow_nan=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed catalog differs from the installed scikit-learn",
    )
    args = parser.parse_args(argv)
    text = render(build_catalog())
    if args.check:
        current = CATALOG_PATH.read_text(encoding="utf-8") if CATALOG_PATH.exists() else ""
        if current != text:
            print(f"{CATALOG_PATH} is stale; run `make catalog`", file=sys.stderr)
            return 1
        return 0
    CATALOG_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {CATALOG_PATH} for scikit-learn {sklearn.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
