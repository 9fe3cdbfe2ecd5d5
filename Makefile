# tabpipe: every entry point. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/phishing.yaml
STATE_DIR ?= .state
MLFLOW_URI ?= http://127.0.0.1:5000
# Not 8080: the cluster path maps the KFP UI there (kind-cluster.yaml).
SERVE_PORT ?= 8765
SERVING_URL ?= http://127.0.0.1:$(SERVE_PORT)
# REUSE=1 lets make run use an MLflow server or endpoint this project did not start (refused by default).
REUSE ?=
# STORE=minio keeps the data, MLflow's artifacts and the deploy bundles on a local MinIO (make minio-up).
STORE ?= local
# RUNNER=docker runs every task in the project image (kfp.local's DockerRunner; make image builds it first).
RUNNER ?= subprocess
# Build caches (Go modules and builds, the control plane's binaries, Docker's images) live in one folder
# the project owns, outside the clone, so a fresh clone on the same machine reuses them.
TABPIPE_CACHE ?= $(HOME)/.cache/tabpipe
# MinIO, built from its Go module into .tools/; its Go caches are in TABPIPE_CACHE.
TOOLS := $(CURDIR)/.tools
GO_CACHE := $(TABPIPE_CACHE)/go
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN := $(TOOLS)/bin/minio
MINIO_ADDRESS ?= 127.0.0.1:9000
MINIO_CONSOLE_ADDRESS ?= 127.0.0.1:9001
# The KFP UI/API through kind-cluster.yaml's port mapping (18080: 8080 and 5000 stay free for local servers).
KFP_HOST ?= http://localhost:18080
PYTEST_ARGS ?=
# make test: everything that needs no MinIO, control plane or Docker engine, and is not slow.
FAST_TESTS := not slow and not storage and not cluster and not docker

.PHONY: help install run test test-all test-storage bytecode minio minio-up minio-down test-unit test-e2e lint format compile check-compiled bench-pipeline \
        bench-serving serve serve-down predict deploy promote rollback control-plane test-cluster cluster-secrets cluster-up cluster-down cluster-predict test-serving mlflow-up mlflow-down pipeline-run pipeline-upload schedule clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# Each pipeline task is a fresh interpreter; with PYTHONDONTWRITEBYTECODE set (as on these
# machines) nothing caches the project's own bytecode, so every task would recompile it.
bytecode:  ## precompile the project's modules (each pipeline task then skips compiling them)
	$(BIN)/python -m compileall -q tabpipe components pipelines

install: $(STAMP)  ## create .venv and install the project with dev tools

run: $(STAMP) bytecode $(if $(filter minio,$(STORE)),$(MINIO_BIN)) $(if $(filter docker,$(RUNNER)),image)  ## run the whole pipeline locally (kfp.local + local MLflow server); CONFIG=... for another data set; RUNNER=docker: each task in the image
	$(BIN)/tabpipe run --config $(CONFIG) --tracking-uri $(MLFLOW_URI) --state-dir $(STATE_DIR) \
		--serving-url $(SERVING_URL) $(if $(REUSE),--reuse-servers) \
		--store $(STORE) --minio-binary $(MINIO_BIN) --minio-address $(MINIO_ADDRESS) \
		--minio-console-address $(MINIO_CONSOLE_ADDRESS) \
		--runner $(RUNNER) $(if $(filter docker,$(RUNNER)),--docker-host $(DOCKER_HOST))

test: $(STAMP) bytecode lint  ## lint, then the unit, contract, data, model and serving tests (under 10 minutes)
	$(BIN)/python -m pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

test-all: test test-e2e test-storage  ## everything .ci/run runs

test-storage: $(STAMP) $(MINIO_BIN)  ## object-store tests against a real MinIO (built by make minio; needs Go)
	$(BIN)/python -m pytest -m storage $(PYTEST_ARGS)

test-unit: test  ## the same as make test

test-e2e: $(STAMP) bytecode  ## end-to-end: the whole pipeline and real server processes against real MLflow servers
	$(BIN)/python -m pytest -m "slow and not storage and not cluster and not docker" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (pinned)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

compile: $(STAMP)  ## compile pipelines/training_pipeline.yaml
	$(BIN)/tabpipe compile

bench-pipeline: $(STAMP) bytecode  ## benchmark: local pipeline wall time, per-stage times, overhead, cached re-run
	$(BIN)/python bench/bench_pipeline.py --config $(CONFIG)

BUNDLE ?= models:/phishing-classifier@champion
BENCH_VENVS ?= $(STATE_DIR)/bench-venvs

serve: $(STAMP)  ## serve BUNDLE (deploy bundle dir or models:/name@alias) over OIP V2 REST on 127.0.0.1:SERVE_PORT
	$(BIN)/tabpipe serve --model $(BUNDLE) --tracking-uri $(MLFLOW_URI) --port $(SERVE_PORT)

predict: $(STAMP)  ## send one row of CONFIG's data to the running server and print the answer
	$(BIN)/tabpipe predict --config $(CONFIG) --url $(SERVING_URL)

test-serving: $(STAMP)  ## serving tests: validation, real server over HTTP, tritonclient, fuzzing, hot swap, ONNX
	$(BIN)/python -m pytest tests/serving tests/serving_onnx $(PYTEST_ARGS)

bench-serving: $(STAMP)  ## benchmark: serving latency/throughput/batch over REST JSON, REST binary and gRPC vs in-process, MLServer 1.7.1, KServe 0.21
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk) \
		|| echo "wrk not installed: using the Python load client"
	@test -x $(TOOLS)/bin/ghz || { command -v go >/dev/null && GOBIN=$(TOOLS)/bin GOPATH=$(GO_CACHE)/path \
		GOMODCACHE=$(GO_CACHE)/mod GOCACHE=$(GO_CACHE)/build GOFLAGS=-modcacherw \
		go install github.com/bojand/ghz/cmd/ghz@v0.121.0; } || echo "ghz not built: using the Python gRPC load client"
	bash bench/serving_peers/setup_venvs.sh $(PYTHON) $(BENCH_VENVS)
	$(BIN)/python bench/bench_serving.py --venvs $(BENCH_VENVS) --ghz $(TOOLS)/bin/ghz $(BENCH_ARGS)

mlflow-up: $(STAMP)  ## start the local MLflow server (make run does this when needed)
	$(BIN)/python -c "from pathlib import Path; from tabpipe.mlflow_server import ensure_server; print(ensure_server('$(MLFLOW_URI)', Path('$(STATE_DIR)/mlflow')))"

# Stops exactly the process group make run started (its PID file), never a process found by name.
define stop_pidfile
	@if [ -f $(1) ]; then kill -TERM -- -$$(cat $(1)) 2>/dev/null && echo "stopped pid $$(cat $(1))" \
		|| echo "pid $$(cat $(1)) was not running"; rm -f $(1); else echo "nothing started here ($(1) absent)"; fi
endef

mlflow-down:  ## stop the local MLflow servers started by make run (by their PID files; STORE=minio has its own)
	$(call stop_pidfile,$(STATE_DIR)/mlflow/server.pid)
	$(call stop_pidfile,$(STATE_DIR)/mlflow-minio/server.pid)

serve-down:  ## stop the local serving endpoint started by make run (by its PID file)
	$(call stop_pidfile,$(STATE_DIR)/serving/server.pid)

# The cluster: run, upload, schedule the committed compiled pipeline (make compile refreshes it).
KFP_TIMEOUT ?= 3600
NO_WAIT ?=
# KFP's cron has six fields, seconds first: Mondays at 03:00.
CRON ?= 0 0 3 * * 1

pipeline-run: $(STAMP)  ## run the pipeline on the KFP cluster at KFP_HOST and wait (KFP_TIMEOUT, NO_WAIT=1); fails unless SUCCEEDED
	$(BIN)/tabpipe submit --config $(CONFIG) --host $(KFP_HOST) --timeout $(KFP_TIMEOUT) $(if $(NO_WAIT),--no-wait)

pipeline-upload: $(STAMP)  ## upload the pipeline to KFP as a version named by the code (reused when already there)
	$(BIN)/tabpipe upload --host $(KFP_HOST)

schedule: $(STAMP)  ## retrain CONFIG on CRON: one KFP recurring run on the uploaded version (re-running changes nothing)
	$(BIN)/tabpipe schedule --config $(CONFIG) --host $(KFP_HOST) --cron "$(CRON)"

# ---- A kind cluster with KFP, MinIO, MLflow and the serving namespace (manifests/README.md) ------------
KIND_CLUSTER ?= tabpipe
SERVING_TARGET_MANIFESTS ?= plain

cluster-secrets:  ## write the gitignored credential files the manifests' secret generators read (random values)
	python3 manifests/generate-secrets.py $(ARGS)

cluster-up: cluster-secrets image  ## kind cluster + our MinIO + MLflow + KFP 2.17.0 on it + serving namespace; waits until ready
	kind get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || kind create cluster --config kind-cluster.yaml --name $(KIND_CLUSTER)
	$(MAKE) --no-print-directory kind-load KIND_CLUSTER=$(KIND_CLUSTER)
	kubectl apply -k manifests/base
	kubectl -n tabpipe wait --for=condition=complete job/minio-buckets --timeout=10m
	kubectl -n tabpipe rollout status deploy/mlflow --timeout=5m
	kubectl apply -k manifests/kfp/cluster-scoped
	kubectl wait --for condition=established --timeout=60s crd/applications.app.k8s.io
	kubectl apply -k manifests/kfp
	kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout=20m
	kubectl apply -k manifests/pipeline
	kubectl apply -k manifests/kind
	kubectl apply -k manifests/serving/base
	@echo "KFP UI: http://127.0.0.1:18080   then: make pipeline-upload; make pipeline-run"

cluster-down:  ## delete the kind cluster (its volumes go with it)
	kind delete cluster --name $(KIND_CLUSTER)

cluster-predict: $(STAMP)  ## send rows to the in-cluster endpoint of TARGET through a kubectl port-forward (stopped by PID)
	@set -euo pipefail; \
	svc=$$($(BIN)/python -c "from tabpipe.config import load_config; from tabpipe.cluster_deploy.objects import object_name; print(object_name(load_config('$(CONFIG)').registry.model_name))"); \
	kubectl -n tabpipe-serving port-forward --address 127.0.0.1 svc/$$svc 18765:8080 >/dev/null & pf=$$!; \
	trap 'kill $$pf 2>/dev/null' EXIT; sleep 2; \
	$(BIN)/tabpipe predict --config $(CONFIG) --url http://127.0.0.1:18765

# ---- Cluster serving: deploy a registered version, then promote or roll back a canary -----------------
# TARGET picks the serving stack; VERSION the registered version (its bundle must be on MinIO, which
# the pipeline's deploy stage puts there); CANARY=<percent> serves it beside the current one.
TARGET ?= plain
VERSION ?=
CANARY ?=
# The in-cluster MLflow through `kubectl -n tabpipe port-forward svc/mlflow 15000:5000` (5000 is the local one).
CLUSTER_MLFLOW_URI ?= http://127.0.0.1:15000
KUBECONFIG_FLAG = $(if $(KUBECONFIG),--kubeconfig $(KUBECONFIG))

deploy: $(STAMP)  ## deploy VERSION to the cluster with TARGET=seldon|kserve|plain (CANARY=10 for a canary)
	@test -n "$(VERSION)" || { echo "make deploy needs VERSION=<registered version>"; exit 2; }
	$(BIN)/tabpipe deploy --config $(CONFIG) --target $(TARGET) --version $(VERSION) $(KUBECONFIG_FLAG) \
		--tracking-uri $(CLUSTER_MLFLOW_URI) $(if $(CANARY),--canary-percent $(CANARY))

promote: $(STAMP)  ## make the canary on TARGET the only served version and move @champion to it
	$(BIN)/tabpipe canary promote --config $(CONFIG) --target $(TARGET) $(KUBECONFIG_FLAG) --tracking-uri $(CLUSTER_MLFLOW_URI)

rollback: $(STAMP)  ## remove the canary on TARGET; @champion stays
	$(BIN)/tabpipe canary rollback --config $(CONFIG) --target $(TARGET) $(KUBECONFIG_FLAG) --tracking-uri $(CLUSTER_MLFLOW_URI)

# MinIO, built from its Go module into a folder the project owns (not the system); caches stay here too,
# so a second build on the same machine is quick. The server is AGPLv3: run as a separate process only.

$(MINIO_BIN):
	@command -v go >/dev/null || { echo "MinIO is built with Go (https://go.dev/dl); install Go, or run MinIO's official image and set MINIO_ENDPOINT"; exit 1; }
	mkdir -p $(TOOLS)/bin $(GO_CACHE)
	GOBIN=$(TOOLS)/bin GOPATH=$(GO_CACHE)/path GOMODCACHE=$(GO_CACHE)/mod GOCACHE=$(GO_CACHE)/build \
		GOFLAGS=-modcacherw go install github.com/minio/minio@$(MINIO_VERSION)

# The test control plane (kube-apiserver, controller-manager, scheduler, KWOK, CRDs), built once into TABPIPE_CACHE.
control-plane:  ## build the test control plane's binaries into TABPIPE_CACHE (about 15 minutes cold, then instant)
	bash controlplane/build.sh $(TABPIPE_CACHE)

test-cluster: $(STAMP) control-plane  ## tests against a real control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)
	PATH="$(TABPIPE_CACHE)/bin:$$PATH" TABPIPE_CACHE=$(TABPIPE_CACHE) $(BIN)/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

minio: $(MINIO_BIN)  ## build MinIO into .tools/bin when missing (about 2 minutes cold)

minio-up: $(STAMP) $(MINIO_BIN)  ## start MinIO on MINIO_ADDRESS (data and credentials under STATE_DIR/minio)
	$(BIN)/python -m tabpipe.minio_server up --binary $(MINIO_BIN) --address $(MINIO_ADDRESS) \
		--console-address $(MINIO_CONSOLE_ADDRESS) --state-dir $(STATE_DIR)/minio

minio-down:  ## stop the MinIO server started by minio-up (by its PID file); data is kept
	$(call stop_pidfile,$(STATE_DIR)/minio/server.pid)

# Docker: the engine, the project image, kind. The engine's images and layers (its data-root), its
# socket and PID file, and make base-image's root filesystem live in TABPIPE_CACHE, shared by every clone.
.PHONY: docker-up docker-down base-image image kind-load test-docker
DOCKER_ROOT := $(TABPIPE_CACHE)/docker
# The engine the docker targets (and tabpipe run --runner docker) use: DOCKER_HOST from the environment;
# else this project's dockerd when it runs; else the current docker context's engine when it answers
# (a laptop's); else the socket make docker-up starts a dockerd on. Worked out once, when first used.
DOCKER_HOST ?= $(eval DOCKER_HOST := $(shell bash docker/engine.sh host $(DOCKER_ROOT)))$(DOCKER_HOST)
# The tag the compiled pipeline names (components/image.py: tabpipe:<version>).
IMAGE := tabpipe:$(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' tabpipe/__init__.py)
# Empty: python:3.11.14-slim-bookworm when the engine has it or can pull it, else LOCAL_BASE_IMAGE.
BASE_IMAGE ?=
LOCAL_BASE_IMAGE := tabpipe-base:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# CAs pip must trust inside the build (a TLS-inspecting proxy); used by the builder stage only.
EXTRA_CA_FILES ?= $(wildcard /usr/local/share/ca-certificates/*.crt)
KIND_CLUSTER ?= tabpipe

docker-up:  ## use the Docker engine that answers, else start dockerd (no bridge network; its data in TABPIPE_CACHE)
	@DOCKER_HOST=$(DOCKER_HOST) bash docker/engine.sh up $(DOCKER_ROOT)

docker-down:  ## stop the dockerd that make docker-up started (by its PID file); images are kept
	@bash docker/engine.sh down $(DOCKER_ROOT)

base-image: docker-up  ## build tabpipe-base:bookworm with debootstrap, for machines that cannot pull the official base
	@DOCKER_HOST=$(DOCKER_HOST) bash docker/base-image.sh $(LOCAL_BASE_IMAGE) $(DOCKER_ROOT)/rootfs $(DEBIAN_MIRROR)

image: $(STAMP) docker-up  ## build the project image tabpipe:<version> (BASE_IMAGE=... to choose its base)
	@DOCKER_HOST=$(DOCKER_HOST) BASE_IMAGE=$(BASE_IMAGE) EXTRA_CA_FILES="$(EXTRA_CA_FILES)" \
		DEBIAN_MIRROR=$(DEBIAN_MIRROR) bash docker/image.sh $(IMAGE) $(BIN)/python $(DOCKER_ROOT)

# `kind load docker-image` fails on images with BuildKit attestations (containerd image store);
# an archive from docker save loads either way.
kind-load: image  ## load the image into the kind cluster KIND_CLUSTER (docker save + kind load image-archive)
	@command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io/docs/user/quick-start/"; exit 1; }
	mkdir -p $(STATE_DIR)
	DOCKER_HOST=$(DOCKER_HOST) docker save $(IMAGE) -o $(STATE_DIR)/image-archive.tar
	DOCKER_HOST=$(DOCKER_HOST) kind load image-archive $(STATE_DIR)/image-archive.tar --name $(KIND_CLUSTER)
	rm -f $(STATE_DIR)/image-archive.tar

test-docker: $(STAMP) bytecode image  ## the whole pipeline in containers of the image (DockerRunner) against a real MLflow server
	DOCKER_HOST=$(DOCKER_HOST) $(BIN)/python -m pytest -m docker tests/docker $(PYTEST_ARGS)

clean:  ## remove local run state (MLflow db, artifacts, KFP outputs)
	rm -rf $(STATE_DIR)
