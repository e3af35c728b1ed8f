# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv (.venv) from pyproject.toml on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/racer-profiles serve

test: $(VENV)/.installed
	$(PY) -m pytest
