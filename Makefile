# Every target sets up what it needs (idempotent): `make demo` and `make test` work
# on a fresh machine with Python >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xlcorpus-installed
DEMO_OUT ?= demo-output
# Airflow gets its own virtualenv: its pins clash with ours. Its DAG runs the job
# with $(VENV)'s interpreter.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.airflow-installed

.PHONY: install airflow-env demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dataflow]'
	$(BIN)/xlcorpus models fetch
	touch $(STAMP)

install: $(STAMP)

$(AIRFLOW_STAMP): dags/airflow-constraints.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -c dags/airflow-constraints.txt \
		apache-airflow apache-airflow-providers-apache-beam apache-airflow-providers-google
	touch $(AIRFLOW_STAMP)

airflow-env: $(AIRFLOW_STAMP)

demo: $(STAMP)
	$(BIN)/xlcorpus demo --output $(DEMO_OUT) --overwrite

# The virtualenv goes first on PATH: Beam's worker processes start `python` from PATH.
test: $(STAMP) $(AIRFLOW_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" XLCORPUS_AIRFLOW_VENV="$(abspath $(AIRFLOW_VENV))" $(BIN)/python -m pytest

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/langid.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(DEMO_OUT) build dist *.egg-info
