# Two commands: `make demo` runs the main job, `make test` runs the test suite.
# Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BASE_STAMP := $(VENV)/.installed

.PHONY: demo test docs lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# real MovieLens-100k ships inside RecBole's wheel; its own dependencies (torch among them) are
# neither needed nor wanted, and simrec never imports it
RECBOLE := recbole==1.2.1

# the demo needs simrec and the real data only
$(BASE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(RECBOLE)
	touch $(BASE_STAMP)

# the tests also need the dev tools, Ray and the embedded LLM (llama-cpp-python compiles for
# about five minutes the first time; pip caches the wheel)
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev,ray,llm-local]'
	$(BIN)/pip install --quiet --no-deps $(RECBOLE)
	touch $(STAMP) $(BASE_STAMP)

demo: $(BASE_STAMP)
	$(BIN)/simrec run examples/demo.yaml --out datasets_out/demo --overwrite
	$(BIN)/simrec report datasets_out/demo

# real impression logs: the Open Bandit Dataset samples in obp's source distribution (obp needs
# Python < 3.11, so it is downloaded, never installed); the tests read them from $(VENV)/obd
OBP := obp==0.5.7
OBD := $(VENV)/obd/.unpacked
$(OBD): | $(VENV)/bin/python
	$(BIN)/pip download --quiet --no-deps --no-binary=:all: --python-version 3.10 $(OBP) \
		-d $(VENV)/obp-sdist
	mkdir -p $(VENV)/obd
	tar xzf $(VENV)/obp-sdist/obp-0.5.7.tar.gz -C $(VENV)/obd --strip-components=4 \
		obp-0.5.7/obp/dataset/obd
	touch $@

test: $(STAMP) $(OBD)
	$(BIN)/ruff check simrec tests benchmarks docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

# the docs site, into site/ (its reference pages are generated from the code: docs/hooks.py)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check simrec tests benchmarks docs
	$(BIN)/ruff format --check simrec tests benchmarks docs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/bench_policies.py
	$(BIN)/python benchmarks/bench_commands.py
	$(BIN)/python benchmarks/bench_repeats.py
	$(BIN)/python benchmarks/bench_ab.py
	$(BIN)/python benchmarks/bench_fidelity.py
	$(BIN)/python benchmarks/bench_circularity.py
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_sim2real.py
	$(BIN)/python benchmarks/bench_calibration.py

clean:
	rm -rf $(VENV) datasets_out/*/ .pytest_cache site
