# edgemoe — set-up, tests, demo. `make demo` and `make test` need only Python 3.11+ and g++.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HLS_SOURCES := $(shell find hls -name '*.h' -o -name '*.cpp' 2>/dev/null)

.PHONY: all venv test lint format demo clean

all: test

# The venv is rebuilt when the dependency pins change. The hls4ml wheel is installed
# without its dependencies: we only use the ap_types headers it ships.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps hls4ml==1.3.0
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -n "$(HLS_SOURCES)" ]; then $(BIN)/clang-format --dry-run -Werror $(HLS_SOURCES); fi

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	@if [ -n "$(HLS_SOURCES)" ]; then $(BIN)/clang-format -i $(HLS_SOURCES); fi

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/edgemoe verify --backends torch,golden --json demo-out/verify.json

clean:
	rm -rf $(VENV) build *.egg-info demo-out
