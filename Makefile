# Two commands: `make demo` runs the main job, `make test` runs the test suite.
# Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/simrec run examples/demo.yaml --out datasets_out/demo --overwrite
	$(BIN)/simrec report datasets_out/demo

test: $(STAMP)
	$(BIN)/ruff check simrec tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check simrec tests benchmarks
	$(BIN)/ruff format --check simrec tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/bench_policies.py
	$(BIN)/python benchmarks/bench_ab.py

clean:
	rm -rf $(VENV) datasets_out/*/ .pytest_cache
