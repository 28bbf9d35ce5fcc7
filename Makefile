# Two commands do everything on a fresh clone (Python 3.10+ with venv and pip):
#   make demo   create .venv on first use, install segapp, start the web demo on the shipped weights
#   make test   create .venv on first use, install segapp with its test extras, run the test suite
#   make test-fast   the same without the slow tier (kill/resume, bench, load, browser, wheel): the edit loop
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.segapp-installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m ruff check segapp tests benchmarks app.py
	$(PY) -m pytest -q -n 2

test-fast: $(STAMP)
	$(PY) -m ruff check segapp tests benchmarks app.py
	$(PY) -m pytest -q -n 2 -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
