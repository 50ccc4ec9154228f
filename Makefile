# Two commands do all setup on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test test-all lint bench

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m kanvision.train experiment=digits_kan

# one worker per core; a module's tests stay on one worker, so its module-scoped fixtures (trained runs) run once
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n auto --dist loadscope --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadscope --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check kanvision tests scripts benchmarks
	$(VENV)/bin/ruff format --check kanvision tests scripts benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.layers

.PHONY: docs
docs: $(STAMP)
	$(PY) -m mkdocs build --strict
