# Two commands matter: `make run` (the API on the embedded local stack) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
HOST ?= 127.0.0.1
MLPIPE_DATA_DIR ?= $(CURDIR)/.mlpipe
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The job environment: the SageMaker scikit-learn image's Python and library versions
# (sagemaker_jobs/mlcontract/image.py). The local job runner runs the job scripts there.
JOBS_VENV ?= .venv-jobs
JOBS_STAMP := $(JOBS_VENV)/.installed
IMAGE_PINS := sagemaker_jobs/mlcontract/image.py
# The image's Python (3.10) when this machine has it (PATH or pyenv), else python3.
JOBS_PYTHON ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; \
	done)

export MLPIPE_DATA_DIR
export PYTHONPATH := $(CURDIR):$(CURDIR)/functions:$(CURDIR)/sagemaker_jobs

.PHONY: run test fuzz lint fmt bench catalog clean venv jobs-venv package localstack-test
# The Amazon States Language validator (npm, pinned in iac/lint/package-lock.json).
LINT_NODE := iac/lint/node_modules/.installed

# (Re)create the virtualenv whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# (Re)create the job environment whenever the image pins change.
# The image's pins first, then what our job scripts add on top of the image (the same
# sagemaker_jobs/requirements.txt SageMaker installs), constrained to leave the pins alone.
$(JOBS_STAMP): $(IMAGE_PINS) sagemaker_jobs/requirements.txt sagemaker_jobs/requirements-serving.txt
	@rm -rf $(JOBS_VENV)
	@py="$(JOBS_PYTHON)"; if [ -z "$$py" ]; then \
	  echo "note: no Python 3.10 here (the image's); the job environment uses $(PYTHON)" >&2; \
	  py="$(PYTHON)"; fi; $$py -m venv $(JOBS_VENV)
	env -u PYTHONPATH $(JOBS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(JOBS_VENV)/bin/python $(IMAGE_PINS) > $(JOBS_VENV)/requirements.txt
	env -u PYTHONPATH $(JOBS_VENV)/bin/python -m pip install --quiet --only-binary=:all: -r $(JOBS_VENV)/requirements.txt
	env -u PYTHONPATH $(JOBS_VENV)/bin/python -m pip install --quiet --only-binary=:all: \
	  -c $(JOBS_VENV)/requirements.txt -r sagemaker_jobs/requirements.txt
	env -u PYTHONPATH $(JOBS_VENV)/bin/python -m pip install --quiet --only-binary=:all: \
	  -c $(JOBS_VENV)/requirements.txt -r sagemaker_jobs/requirements-serving.txt
	@touch $(JOBS_STAMP)

jobs-venv: $(JOBS_STAMP)

run: $(STAMP) $(JOBS_STAMP)
	$(PY) -m iac.local.serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(JOBS_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Property tests with fresh random examples (make test replays a fixed set): run it before a
# release or after touching input handling; a failure prints the example to add as a test.
fuzz: $(STAMP)
	MLPIPE_FUZZ=explore $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_fuzz_api.py

$(LINT_NODE): iac/lint/package.json iac/lint/package-lock.json
	cd iac/lint && npm ci --no-audit --no-fund --silent
	@touch $(LINT_NODE)

# Our linters, then validators we did not write: cfn-lint on the template as CloudFormation
# sees it (chalice package + the SAM transform), the ASL validator, the IAM check (every
# boto3 call against the role), actionlint on the GitHub workflow.
lint: $(STAMP) $(LINT_NODE)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy functions/chalicelib functions/app.py iac sagemaker_jobs stepfunctions
	$(VENV)/bin/mypy --python-version 3.10 sagemaker_jobs  # the image's Python
	$(PY) -m iac.package_template --lint
	$(PY) -m iac.asl_lint
	$(PY) -m iac.iam_check > /dev/null
	$(VENV)/bin/actionlint .github/workflows/*.yml

# The aws profile against LocalStack (host mode, Python 3.13 in .venv-localstack): starts it,
# runs tests/contract/test_localstack.py, stops it. Skips, saying why, without Python 3.13.
localstack-test: $(STAMP)
	iac/localstack/run.sh

# Every artefact (Lambda bundle, job source) checked against the Lambda limits, and the
# API's cold start; fails when a limit is crossed.
package: $(STAMP)
	$(PY) -m iac.package_report

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/pipeline_vs_sklearn.py

# Regenerate the hyperparameter catalog from the image's scikit-learn (the job environment).
catalog: $(JOBS_STAMP)
	PYTHONPATH=$(CURDIR)/sagemaker_jobs $(JOBS_VENV)/bin/python sagemaker_jobs/catalog_gen.py

clean:
	rm -rf $(VENV) $(JOBS_VENV) .venv-localstack .mypy_cache .ruff_cache .pytest_cache
