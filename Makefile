# tabpipe: every entry point. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/phishing.yaml
STATE_DIR ?= .state
MLFLOW_URI ?= http://127.0.0.1:5000
KFP_HOST ?= http://localhost:8080
PYTEST_ARGS ?=

.PHONY: help install run test test-unit test-e2e lint format compile check-compiled bench-pipeline \
        mlflow-up mlflow-down pipeline-run clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with dev tools

run: $(STAMP)  ## run the whole pipeline locally (kfp.local + local MLflow server); CONFIG=... for another data set
	$(BIN)/tabpipe run --config $(CONFIG) --tracking-uri $(MLFLOW_URI) --state-dir $(STATE_DIR)

test: $(STAMP) lint  ## lint, then every test: unit, pipeline and end-to-end with real MLflow servers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)  ## fast tests only
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-e2e: $(STAMP)  ## end-to-end tests only
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (pinned)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

compile: $(STAMP)  ## compile pipelines/training_pipeline.yaml
	$(BIN)/tabpipe compile

bench-pipeline: $(STAMP)  ## benchmark: local pipeline wall time, per-stage times, overhead, cached re-run
	$(BIN)/python bench/bench_pipeline.py --config $(CONFIG)

mlflow-up: $(STAMP)  ## start the local MLflow server (make run does this when needed)
	$(BIN)/python -c "from pathlib import Path; from tabpipe.mlflow_server import ensure_server; print(ensure_server('$(MLFLOW_URI)', Path('$(STATE_DIR)/mlflow')))"

mlflow-down:  ## stop the local MLflow server started by make run
	-pkill -f "mlflow server --host 127.0.0.1" || true

pipeline-run: $(STAMP)  ## submit the compiled pipeline to a KFP cluster at KFP_HOST
	$(BIN)/tabpipe submit --config $(CONFIG) --host $(KFP_HOST)

clean:  ## remove local run state (MLflow db, artifacts, KFP outputs)
	rm -rf $(STATE_DIR)
