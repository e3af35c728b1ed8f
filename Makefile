# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv (.venv) from pyproject.toml on first use.
# `make run PORT=8001 HOST=0.0.0.0` serves elsewhere; `make stop` (any terminal) stops it.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run stop test check fuzz dashboard

# Editable installs make setuptools print a notice ("Editable installation ... be careful
# with folders ..."): not a problem of this project, so PYTHONWARNINGS hides it.
# The Python client (clients/python, with its Streamlit extra) goes into the same
# virtualenv: its tests run in `make test`.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore::UserWarning:setuptools.command.editable_wheel" \
		$(PY) -m pip install --quiet -e '.[test]' -e './clients/python[streamlit]'
	touch $@

run: $(VENV)/.installed
	@$(VENV)/bin/racer-profiles serve --host $(HOST) --port $(PORT)

stop: $(VENV)/.installed
	@$(VENV)/bin/racer-profiles stop

# The thorough hypothesis profile (tests/conftest.py): the in-memory roster machine's full run.
test: check
	$(PY) -m pytest --hypothesis-profile=thorough

# The example Streamlit dashboard next to a running `make run` (same HOST and PORT): on the
# account of RACER_PROFILES_TOKEN, else on a new one. Headless, and no usage statistics sent.
DASHBOARD_PORT ?= 8501
dashboard: $(VENV)/.installed
	RACER_PROFILES_URL="$${RACER_PROFILES_URL:-http://$(HOST):$(PORT)}" \
	RACER_PROFILES_TOKEN="$${RACER_PROFILES_TOKEN:-$$($(VENV)/bin/racer-profiles accounts create 'Dashboard demo' | tail -n 1)}" \
		$(VENV)/bin/streamlit run clients/python/examples/dashboard.py --server.port $(DASHBOARD_PORT) \
		--server.headless true --browser.gatherUsageStats false

# Lint, format, types and the layers' import contracts (configured in pyproject.toml);
# `make test` runs them first and stops on a violation.
check: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Schemathesis with many more cases than `make test`: FUZZ_MAX_EXAMPLES fuzzed
# requests per operation, FUZZ_STATEFUL_EXAMPLES link-following sequences, fresh
# random data each run (FUZZ_RANDOM).
FUZZ_MAX_EXAMPLES ?= 300
FUZZ_STATEFUL_EXAMPLES ?= 200
fuzz: $(VENV)/.installed
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_STATEFUL_EXAMPLES=$(FUZZ_STATEFUL_EXAMPLES) FUZZ_RANDOM=1 \
		$(PY) -m pytest tests/contract/test_schemathesis.py -s

# The reliability harness at full size (tests/reliability/README.md): 32 clients for minutes,
# >= 10 projector kills, failovers, outages; prints the summary table (and writes it to a file).
.PHONY: reliability
reliability: $(VENV)/.installed
	RELIABILITY_SCALE=long $(PY) -m pytest tests/reliability -m reliability -p no:cacheprovider -s
