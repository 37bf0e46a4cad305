# hoplon — the two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints.txt

.PHONY: demo test venv lint typecheck clean

$(BIN)/hoplon: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	@touch $@

venv: $(BIN)/hoplon

## demo: train the digits CNN (cached), audit its robustness, print where the HTML report is
demo: venv
	OMP_NUM_THREADS=1 $(BIN)/hoplon demo --out reports/demo

## test: the whole test suite (what CI runs), on one torch thread, two workers
test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests

typecheck: venv
	$(BIN)/mypy src tests

clean:
	rm -rf $(VENV) .cache reports build *.egg-info
