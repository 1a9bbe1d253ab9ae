# The kit's commands. `make reports` and `make test` work on a fresh clone: they create the venv,
# install the locked dependencies (with uv, from requirements/constraints.txt) and the kit, and generate the
# demo data when needed. Every set-up step prints one line with its time; a failing step prints its whole
# output. `make reports V=1` shows everything as it happens.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
KERNEL := satisfaction-kit
CONSTRAINTS := requirements/constraints.txt
DEMO_DIR := data/demo
DEMO_CUSTOMERS ?= 20000
DEMO_SEED ?= 42
WORKERS ?= 2
KEEP ?= 12
PYTEST_ARGS ?=
V ?=
# small seeded demo that the test suite and the notebooks under nbval run on (SATISFACTION_KIT_DATA)
TEST_DEMO := build/test-demo
PIP_FLAGS := --disable-pip-version-check --no-input
comma := ,

# What each command installs (extras of pyproject.toml; tests/test_environment.py checks these names):
#   reports, data, bench, install: the dependencies a scheduled server needs to render the reports
#   lab:  + the `lab` extra (JupyterLab)
#   test: + the `test`, `lab` and `spark` extras (the suite checks the whole environment, JupyterLab included,
#         and runs the Spark engine tests in local mode, which also need a Java runtime: `make java`)
EXTRAS_reports :=
EXTRAS_lab := lab
EXTRAS_test := test,lab,spark
READY_reports := $(VENV)/.installed-reports
READY_lab := $(VENV)/.installed-lab
READY_test := $(VENV)/.installed-test

.PHONY: help install data reports test lab bench bench-scale bench-setup lock browser java clean

help:
	@echo "make reports  - set up, generate demo data if needed, render the HTML reports into reports/"
	@echo "make test     - set up (with the test and lab extras) and run the whole test suite"
	@echo "make lab      - JupyterLab with the kit's kernel registered"
	@echo "make data     - generate the demo data into $(DEMO_DIR)"
	@echo "make bench    - run the benchmarks in bench/ (prints ratios against in-run baselines)"
	@echo "make bench-scale - report runs on 20k/1M/10M customers: peak memory of all processes, time (long)"
	@echo "make bench-setup - time 'make reports' from fresh clones, cold and warm package cache (minutes)"
	@echo "make lock     - re-resolve the dependencies and rewrite $(CONSTRAINTS)"

# $(call step,LABEL,WHAT,COMMAND): run COMMAND showing one line "[LABEL] WHAT ... 12.3 s"; its output is shown
# only when it fails (then in full, and the recipe stops with its exit code), or always with V=1.
# WHAT is shell-expanded in double quotes (no commas: write $(comma)).
define step
t0=$${EPOCHREALTIME:-$$(date +%s).000000}; t0=$${t0//[!0-9]/}; \
if [ -n "$(V)" ]; then printf '[%s] %s\n' "$(1)" "$(2)"; { $(3); } || exit $$?; printf '[%s] done in ' "$(1)"; \
else printf '[%s] %s ... ' "$(1)" "$(2)"; \
  out=$$( { $(3); } 2>&1 ) || { rc=$$?; echo "FAILED (exit $$rc):"; printf '%s\n' "$$out" >&2; exit $$rc; }; fi; \
t1=$${EPOCHREALTIME:-$$(date +%s).000000}; t=$$(( ($${t1//[!0-9]/} - t0) / 100000 )); \
printf '%d.%d s\n' $$((t / 10)) $$((t % 10))
endef

# uv does not read pip's configuration: give it the package indexes, find-links and certificate bundle pip is
# configured with here (pip.conf files and PIP_* variables), unless the matching UV_* variable is set. With
# extra indexes, uv picks the best version across all of them, as pip does. On a machine that only knows
# PyPI this sets nothing.
define uv_env_from_pip
cfg=$$({ $(PY) -m pip config list || $(PYTHON) -m pip config list; } 2>/dev/null | sed 's/\\n/ /g'); \
pick() { sed -n "s/^[^=]*\.$$1='\(.*\)'$$/\1/p" <<<"$$cfg"; }; \
words() { tr ' ' '\n' | awk 'NF && !seen[$$0]++' | paste -sd"$$1" -; }; \
idx=$$(pick index-url | head -n1); extra=$$(pick extra-index-url | words ' '); \
links=$$(pick find-links | words ,); cert=$$(pick cert | head -n1); \
[ -z "$$idx" ] || export UV_INDEX_URL="$${UV_INDEX_URL:-$$idx}"; \
[ -z "$$extra" ] || export UV_EXTRA_INDEX_URL="$${UV_EXTRA_INDEX_URL:-$$extra}" \
  UV_INDEX_STRATEGY="$${UV_INDEX_STRATEGY:-unsafe-best-match}"; \
[ -z "$$links" ] || export UV_FIND_LINKS="$${UV_FIND_LINKS:-$$links}"; \
[ -z "$$cert" ] || export SSL_CERT_FILE="$${SSL_CERT_FILE:-$$cert}"
endef

# The venv (without pip: ensurepip alone takes seconds), uv (its version pinned in the lock; installed by the
# system's pip, else by the venv's own after ensurepip), then the kit with the locked dependencies of the given
# extras and pip (pinned too), and the Jupyter kernel. Without uv, pip installs the same pins (slower).
$(VENV)/.installed-%: pyproject.toml $(CONSTRAINTS)
	@$(call step,1/4,creating the venv ($(VENV)),test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV))
	@$(call step,2/4,installing uv,test -x $(UV) || \
		$(PYTHON) -m pip --python $(PY) install $(PIP_FLAGS) -c $(CONSTRAINTS) uv || \
		{ $(PY) -m ensurepip && $(PY) -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) uv; } || true)
	@$(call step,3/4,installing the kit and its locked dependencies ($(if $(EXTRAS_$*),extras $(EXTRAS_$*),no extras)) \
		with $$(test -x $(UV) && echo uv || echo 'pip: uv could not be installed'),\
		if test -x $(UV); then $(uv_env_from_pip); \
			$(UV) pip install --python $(PY) -c $(CONSTRAINTS) pip -e '.$(if $(EXTRAS_$*),[$(EXTRAS_$*)])'; \
		else { $(PY) -m pip --version || $(PY) -m ensurepip; } && \
			$(PY) -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) pip -e '.$(if $(EXTRAS_$*),[$(EXTRAS_$*)])'; fi)
	@$(call step,4/4,registering the Jupyter kernel $(KERNEL),$(PY) -m ipykernel install --sys-prefix \
		--name $(KERNEL) --display-name "Python (satisfaction kit)")
	@touch $@ $(READY_reports)

install: $(READY_reports)

$(DEMO_DIR)/ground_truth.json: | $(READY_reports)
	@$(call step,data,generating the demo data ($(DEMO_CUSTOMERS) customers$(comma) seed $(DEMO_SEED)) into $(DEMO_DIR),\
		$(PY) -m helpers.demo --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED))

data: $(READY_reports) $(DEMO_DIR)/ground_truth.json

reports: $(READY_reports)
	@if $(PY) -c "import helpers.config as c, sys; sys.exit(0 if c.uses_demo_data() else 1)"; then \
		$(MAKE) --no-print-directory -s data; fi
	@echo "[run] $(PY) -m helpers.reports run --workers $(WORKERS) --keep $(KEEP)"
	@$(PY) -m helpers.reports run --workers $(WORKERS) --keep $(KEEP)

browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		( $(call step,browser,installing Debian's chromium for the browser tests,\
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) ) || \
		  echo "WARNING: could not install chromium; browser tests will be skipped"

# PySpark (the spark extra) runs on the JVM: Debian's headless Java runtime when no java is found and we are root
java:
	@command -v java >/dev/null 2>&1 || test -x "$${JAVA_HOME:-/nonexistent}/bin/java" || \
		( $(call step,java,installing Debian's Java runtime for the Spark engine tests,\
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless) ) || \
		  echo "WARNING: could not install Java; the Spark engine tests will be skipped"

$(TEST_DEMO)/ground_truth.json: src/helpers/demo.py src/helpers/schema.py | $(READY_test)
	@rm -rf $(TEST_DEMO)
	@$(call step,data,generating the test demo data into $(TEST_DEMO),\
		$(PY) -m helpers.demo --out $(TEST_DEMO) --customers 2000 --seed 7)

test: $(READY_test) browser java $(TEST_DEMO)/ground_truth.json
	SATISFACTION_KIT_DATA=$(CURDIR)/$(TEST_DEMO) $(PY) -m pytest -n $(WORKERS) --dist loadfile \
		tests --nbval-lax notebooks $(PYTEST_ARGS)

# IPython history stays out of the repo (etc/ipython/profile_default/ipython_*config.py: HistoryManager off);
# as root (a container) JupyterLab needs --allow-root
lab: $(READY_lab)
	@$(MAKE) --no-print-directory -s data
	IPYTHONDIR=$(CURDIR)/etc/ipython $(VENV)/bin/jupyter lab --notebook-dir=. \
		$(if $(filter 0,$(shell id -u)),--allow-root) notebooks/exploratory/satisfaction_explorer.ipynb

bench: $(READY_reports)
	@for b in $(filter-out bench/bench_scale.py,$(wildcard bench/bench_*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

# issue #14: whole report runs on 20k, 1M and 10M generated customers (generated once into build/, ~5 GB), the
# summed memory of all the run's processes and the time; then Spark on 1M. Long: SIZES=20000,1000000 NO_SPARK=1
bench-scale: $(READY_reports)
	$(PY) bench/bench_scale.py $(if $(SIZES),--sizes $(SIZES)) $(if $(NO_SPARK),--no-spark)

# minutes: `make reports` in fresh clones, cold and warm package cache (BASELINE=REV: also REV's set-up)
bench-setup:
	bash bench/bench_setup.sh $(if $(BASELINE),--baseline $(BASELINE))

# Re-resolve pyproject.toml (all extras) plus uv and pip into the lock for this platform and Python, keeping the
# current pins where they still fit (UPGRADE=1: the newest versions). Needs the venv's uv (made by `make install`).
lock: $(READY_reports)
	@$(call step,lock,resolving pyproject.toml (all extras) into $(CONSTRAINTS),\
		$(uv_env_from_pip); printf 'uv\npip\n' | $(UV) pip compile - pyproject.toml --all-extras --python $(PY) \
		--no-header --no-annotate $(if $(UPGRADE),--upgrade) -o $(CONSTRAINTS))
	@echo "wrote $(CONSTRAINTS); update environment.yml to the same versions (tests/test_environment.py checks it)"

clean:
	rm -rf $(VENV) reports build
