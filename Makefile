# One entry point for people and CI: make run, make test, make bench.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8

.PHONY: install run test test-fast bench bench-train lock lint clean

install: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --python $(BIN)/python requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements/lock.txt

run: install
	docker/bin/run-local

test: install
	$(BIN)/python -m pytest -ra

bench: install
	$(BIN)/python bench/train_speed.py

bench-train: install
	$(BIN)/python bench/train_speed.py

clean:
	rm -rf $(VENV) .data
