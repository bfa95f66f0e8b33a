# One entry point for people and CI: make run, make test, make bench.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install system-deps run lint test test-containers bench bench-train bench-sweep bench-checkpoint bench-serve bench-records lock docs manifests kubectl-check clean

install: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --compile-bytecode --python $(BIN)/python requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# requirements/lock.txt: what make install, CI and the CPU images install (TensorFlow for the CPU).
# requirements/gpu.txt: the GPU worker image's (TensorFlow with CUDA), every package they share
# pinned by lock.txt: one resolution, never a second list (tests/docker/test_locks.py checks).
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28

lock:
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra api --extra dev --extra server $(LOCK_TARGET) -o requirements/lock.txt
	$(BIN)/uv pip compile pyproject.toml --extra gpu --constraint requirements/lock.txt $(LOCK_TARGET) \
		-o requirements/gpu.txt

# The suite starts Redis servers of its own (redis-server), checks the MLflow UI in a headless
# browser (chromium) and runs the benchmarks, which load the servers with wrk: all from Debian's packages.
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium wrk:wrk
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian's packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: install
	docker/bin/run-local

# Lint and types (config in pyproject.toml), before the suite: make test, and so CI, stops on either.
# ruff format . fixes the format, ruff check --fix . what it can of the rest.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install system-deps kubectl-check lint
	$(BIN)/python -m pytest -ra

# The Kubernetes deployment (deploy/kubernetes, Kustomize) rendered as YAML, a file per variant, by
# kubectl's built-in kustomize: no cluster needed. tests/deploy renders them the same way (into a
# folder of its own, MANIFESTS=...) and validates every object against Kubernetes' schemas.
KUBECTL ?= kubectl
MANIFESTS ?= build/manifests
MANIFEST_VARIANTS := cpu gpu gpu-ingress-external-postgres

manifests: kubectl-check
	@mkdir -p $(MANIFESTS)
	@for variant in $(MANIFEST_VARIANTS); do \
		$(KUBECTL) kustomize deploy/kubernetes/overlays/$$variant > $(MANIFESTS)/$$variant.yaml || exit 1; \
		echo "$(MANIFESTS)/$$variant.yaml"; done

# Components and replacements with wildcards need kustomize 5 (kubectl 1.27 or newer).
kubectl-check:
	@command -v $(KUBECTL) >/dev/null 2>&1 || { echo "$(KUBECTL) not found: make manifests and make test render \
	deploy/kubernetes with kubectl's built-in kustomize. Install kubectl 1.27 or newer \
	(https://kubernetes.io/docs/tasks/tools/; Debian's kubernetes-client, 1.20, is too old) or set KUBECTL=/path/to/kubectl." >&2; exit 1; }
	@$(KUBECTL) version --client -o json 2>/dev/null | grep -Eq '"kustomizeVersion": "v([5-9]|[1-9][0-9])\.' || { \
	echo "$(KUBECTL)'s kustomize is older than 5 ($$($(KUBECTL) version --client 2>&1 | tr '\n' ' ')): install kubectl 1.27 or newer." >&2; exit 1; }

# The containers built and run (tests/containers): a Docker engine that answers (on these machines,
# ../shared/containers/docker-up.sh installs and starts one, and stand-in-images.sh builds the public
# base images they cannot pull; elsewhere, an engine that already runs), then the three images, the
# compose stack (CPU variant) under a project name of its own, a job through it, a worker container
# killed mid-job, Redis restarted; down -v at the end.
SHARED_CONTAINERS := ../shared/containers
test-containers: install
	@if [ -x $(SHARED_CONTAINERS)/docker-up.sh ]; then $(SHARED_CONTAINERS)/docker-up.sh; \
	else docker info >/dev/null || { echo "no Docker engine answers" >&2; exit 1; }; fi
	@if [ -x $(SHARED_CONTAINERS)/stand-in-images.sh ]; then $(SHARED_CONTAINERS)/stand-in-images.sh; fi
	$(BIN)/python -m pytest -ra -m containers tests/containers $(PYTEST_ARGS)

# make bench BENCH_ARGS=--quick: a tiny configuration that only checks that everything runs.
bench: install system-deps
	$(BIN)/python bench/train_speed.py $(BENCH_ARGS)
	$(BIN)/python bench/sweep_speed.py $(BENCH_ARGS)
	$(BIN)/python bench/sweep_overhead.py $(BENCH_ARGS)
	$(BIN)/python bench/redis_memory.py $(BENCH_ARGS)
	$(BIN)/python bench/serve_targets.py $(BENCH_ARGS)
	$(BIN)/python bench/checkpoint_writes.py $(BENCH_ARGS)
	$(BIN)/python bench/records.py $(BENCH_ARGS)
	$(BIN)/python bench/serve_speed.py $(BENCH_ARGS)

bench-train: install
	$(BIN)/python bench/train_speed.py $(BENCH_ARGS)

bench-sweep: install system-deps
	$(BIN)/python bench/sweep_speed.py $(BENCH_ARGS)
	$(BIN)/python bench/sweep_overhead.py $(BENCH_ARGS)

bench-checkpoint: install system-deps
	$(BIN)/python bench/checkpoint_writes.py $(BENCH_ARGS)

bench-serve: install system-deps
	$(BIN)/python bench/serve_targets.py $(BENCH_ARGS)
	$(BIN)/python bench/serve_speed.py $(BENCH_ARGS)

# One token's records against the others: a minute of churn with and without the records budget, listings after
# a history of 30,720 jobs (bench/records.py).
bench-records: install system-deps
	$(BIN)/python bench/records.py $(BENCH_ARGS)

# docs/settings.md, from the settings classes' field descriptions (tests/test_docs.py checks it is current).
docs: install
	$(BIN)/python docs/settings_table.py

clean:
	rm -rf $(VENV) .data build
