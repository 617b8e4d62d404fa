# kvmon: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.stamp-install
NODE_STAMP := node_modules/.stamp-install
# Checkov pins packaging<24, which today's pytest refuses: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.stamp-install
SYS_STAMP := .stamp-system

.PHONY: demo test lint typecheck pytest install clean system-deps lock

# The tests run on exactly what the Functions package deploys: requirements.txt's pins first, then
# kvmon with its cli and dev extras constrained to them.
$(PY_STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -e '.[dev,cli]' -c requirements.txt
	touch $@

# requirements.txt is compiled from pyproject.toml's dependencies for the Functions runtime
# (Linux, Python 3.11: infra/modules/function-app.bicep); tests/test_lock.py keeps the two in step.
lock: $(PY_STAMP)
	$(BIN)/python -m pip install --quiet uv
	{ echo "# What the Azure Functions deployment installs, pinned: \`make lock\` compiles it from pyproject.toml."; \
	  echo "# Runtime only: the cli extra (rich) and the dev extra (tests, lab) stay out of the package."; \
	  $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --python-platform linux \
	    --no-header --annotation-style line --quiet; } > requirements.txt

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests use (headless Chromium for the report test), installed only where missing.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and cannot install it (not root or no apt-get): the report screenshot test will skip"; fi; \
	fi

install: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP)
	$(BIN)/mypy

pytest: install system-deps
	$(BIN)/pytest

test: install system-deps lint typecheck pytest

demo: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/python -m lab.demo

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
