# `make lab`: the default lab. `make test`: every test. `make test-fast`: unit and render tests only.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: lab test test-fast lint venv host-deps

lab: venv
	$(BIN)/kubelab up

# Two pytest-xdist workers, each taking one test file at a time (a module's lab serves all of its tests), the
# longest files first (tests/conftest.py): the HA module, about half of the run, goes on beside the others.
test: venv host-deps
	$(BIN)/ruff check provisioner tests bench playbooks
	$(BIN)/python -m pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests

test-fast: venv
	$(BIN)/python -m pytest -q -ra tests/unit tests/render

lint: venv
	$(BIN)/ruff check provisioner tests bench playbooks
	$(BIN)/ruff format --check provisioner tests bench playbooks

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

host-deps:
	scripts/install-host-deps.sh
