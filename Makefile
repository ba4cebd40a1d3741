# Two commands matter: `make run` (the API on the embedded local stack) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
HOST ?= 127.0.0.1
MLPIPE_DATA_DIR ?= $(CURDIR)/.mlpipe
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export MLPIPE_DATA_DIR
export PYTHONPATH := $(CURDIR):$(CURDIR)/functions:$(CURDIR)/sagemaker_jobs

.PHONY: run test fuzz lint fmt bench catalog clean venv

# (Re)create the virtualenv whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m iac.local.serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Property tests with fresh random examples (make test replays a fixed set): run it before a
# release or after touching input handling; a failure prints the example to add as a test.
fuzz: $(STAMP)
	MLPIPE_FUZZ=explore $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_fuzz_api.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy functions/chalicelib functions/app.py iac sagemaker_jobs stepfunctions

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/pipeline_vs_sklearn.py

# Regenerate the hyperparameter catalog from the installed scikit-learn.
catalog: $(STAMP)
	$(PY) sagemaker_jobs/catalog_gen.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
