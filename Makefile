# Every target sets up what it needs (idempotent): `make demo` and `make test` work
# on a fresh machine with Python >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xlcorpus-installed
DEMO_OUT ?= demo-output

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/xlcorpus models fetch
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/xlcorpus demo --output $(DEMO_OUT) --overwrite

# The virtualenv goes first on PATH: Beam's worker processes start `python` from PATH.
test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/langid.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info
