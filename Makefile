# Every target bootstraps .venv on a fresh machine (python3.11 + pip from the package index).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test check lint typecheck bench bench-rlms fmt docs clean system-deps

# The reference RLM implementation (rlms) for benchmarks/rlm.py, in a virtual environment of its
# own: its package is also named `rlm` and would shadow this one in .venv.
RLMS_VENV := .venv-rlms
RLMS_STAMP := $(RLMS_VENV)/.installed

# The service (the server extra) is named, not only reached through dev -> test -> server: on a
# fresh environment pip's resolver backtracks into a dead end (aiobotocore against moto's
# botocore) when the service's packages come only through nested extras.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/rlm serve

# PostgreSQL and Chromium come from the distribution's packages (scripts/system-deps.sh).
system-deps:
	./scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest tests --durations=30  # the slowest, to keep the suite in its 30 min

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(STAMP)
	$(BIN)/python -c 'from pathlib import Path; from rlm.settings_doc import write_readme_table; write_readme_table(Path("README.md"))'

$(RLMS_STAMP): benchmarks/requirements-rlms.txt
	test -x $(RLMS_VENV)/bin/python || $(PY) -m venv $(RLMS_VENV)
	$(RLMS_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-rlms.txt
	touch $(RLMS_STAMP)

bench-rlms: $(RLMS_STAMP)

bench: $(STAMP) $(RLMS_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(RLMS_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
