# The kit's commands. `make reports` and `make test` work on a fresh clone: they create the venv,
# install the locked dependencies and the kit, and generate the demo data when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := satisfaction-kit
CONSTRAINTS := requirements/constraints.txt
DEMO_DIR := data/demo
DEMO_CUSTOMERS ?= 20000
DEMO_SEED ?= 42
WORKERS ?= 2
KEEP ?= 12
PYTEST_ARGS ?=
# small seeded demo that the test suite and the notebooks under nbval run on (SATISFACTION_KIT_DATA)
TEST_DEMO := build/test-demo

.PHONY: help install data reports test lab bench lock browser clean

help:
	@echo "make reports  - set up, generate demo data if needed, render the HTML reports into reports/"
	@echo "make test     - set up and run the whole test suite (unit, reference, notebooks, browser)"
	@echo "make lab      - JupyterLab with the kit's kernel registered"
	@echo "make data     - generate the demo data into $(DEMO_DIR)"
	@echo "make bench    - run the benchmarks in bench/ (prints ratios against in-run baselines)"
	@echo "make lock     - re-resolve the dependencies and rewrite $(CONSTRAINTS)"

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (satisfaction kit)" >/dev/null
	touch $(STAMP)

$(DEMO_DIR)/ground_truth.json: | $(STAMP)
	$(PY) -m helpers.demo --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED)

data: $(STAMP) $(DEMO_DIR)/ground_truth.json

reports: $(STAMP)
	@if $(PY) -c "import helpers.config as c, sys; sys.exit(0 if c.uses_demo_data() else 1)"; then \
		$(MAKE) --no-print-directory data; fi
	$(PY) -m helpers.reports run --workers $(WORKERS) --keep $(KEEP)

browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ echo "installing Debian's chromium for the browser tests"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		  echo "WARNING: could not install chromium; browser tests will be skipped"; }

$(TEST_DEMO)/ground_truth.json: src/helpers/demo.py src/helpers/schema.py | $(STAMP)
	rm -rf $(TEST_DEMO)
	$(PY) -m helpers.demo --out $(TEST_DEMO) --customers 2000 --seed 7

test: $(STAMP) browser $(TEST_DEMO)/ground_truth.json
	SATISFACTION_KIT_DATA=$(CURDIR)/$(TEST_DEMO) $(PY) -m pytest -n $(WORKERS) --dist loadfile \
		tests --nbval-lax notebooks $(PYTEST_ARGS)

lab: $(STAMP) data
	IPYTHONDIR=$(CURDIR)/etc/ipython $(VENV)/bin/jupyter lab --notebook-dir=. \
		notebooks/exploratory/satisfaction_explorer.ipynb

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock:
	rm -rf build/lockenv && $(PYTHON) -m venv build/lockenv
	build/lockenv/bin/pip install --quiet --upgrade "pip>=24"
	build/lockenv/bin/pip install --quiet '.[test]'
	build/lockenv/bin/pip freeze --exclude satisfaction-kit | grep -v '^-e' > $(CONSTRAINTS)
	rm -rf build/lockenv
	@echo "wrote $(CONSTRAINTS); update environment.yml to the same versions (tests check it)"

clean:
	rm -rf $(VENV) reports build
