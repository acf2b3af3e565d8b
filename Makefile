# The two quick-start commands (README): `make demo` and `make test`.
# Each creates .venv with the project and its dev tools on first use, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-any-date lint check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mpc demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The suite again with the clock at 2026-01-01 and 2035-12-31, in time zones east and west of UTC.
test-any-date: $(STAMP)
	$(BIN)/python .ci/any_date.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: test lint

# Benchmarks against cryptographic MPC (benchmarks/mpc_vs_crypto.py). SecretFlow SPU needs
# numpy<2, which pyarrow refuses, so it gets a venv of its own.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	test -x .venv-spu/bin/python || ($(PYTHON) -m venv .venv-spu && .venv-spu/bin/python -m pip install --quiet spu)
	$(BIN)/python benchmarks/mpc_vs_crypto.py

clean:
	rm -rf $(VENV) .venv-spu .pytest_cache .mypy_cache .ruff_cache
