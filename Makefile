# bnlab — two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Tests that exercise the Keras layer run once per backend; the rest run once, on the default (JAX).
BACKENDS_EXTRA := tensorflow torch

.PHONY: demo test test-fast bench reproduce studies data clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Each target installs what it needs (scripts/install.sh: through uv, or pip where uv fails); the
# stamp files make a second run skip it. Every module is compiled at install: where
# PYTHONDONTWRITEBYTECODE is set (this project's hosts) nothing compiled later is kept, and every
# process would compile its imports again (bench/tried.md).
$(VENV)/.installed-demo: pyproject.toml scripts/install.sh | $(PY)
	scripts/install.sh $(PY)
	$(PY) -c "import bnlab, keras, jax, numpy, matplotlib"
	touch $@

$(VENV)/.installed-test: pyproject.toml scripts/install.sh | $(PY)
	scripts/install.sh $(PY) test,tensorflow,torch,ray,export
	$(PY) -c "import bnlab, keras, jax, tensorflow, torch, pytest, xdist, ray, tensorboardX, mlflow, nbclient"
	touch $@

data:
	@scripts/ensure-fashion-mnist.sh

demo: $(VENV)/.installed-demo data
	$(VENV)/bin/bnlab demo

# Each phase prints its 30 slowest tests and how long it took. WORKERS=2 runs the tests in two
# processes (pytest-xdist: each test to whichever is free); WORKERS=0 runs them in this one.
WORKERS ?= 2
# The files with a test marked `backend`: each worker of the other backends' phases imports only
# these (collecting all 54 files cost each worker about 3 s more, 7 Dec).
BACKEND_FILES = $(shell grep -l "mark.backend" tests/test_*.py)
PYTEST  := $(PY) -m pytest -n $(WORKERS) --dist loadgroup --durations=30

test: $(VENV)/.installed-test data
	@start=$$(date +%s); KERAS_BACKEND=jax $(PYTEST) || exit 1; \
	  echo "make test: the JAX suite took $$(( $$(date +%s) - start )) s"
	@for b in $(BACKENDS_EXTRA); do start=$$(date +%s); \
	  KERAS_BACKEND=$$b $(PYTEST) -m backend $(BACKEND_FILES) || exit 1; \
	  echo "make test: the backend tests on $$b took $$(( $$(date +%s) - start )) s"; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# Every experiment at the seeds' full settings, 5 seeds each (about half an hour on 2 cores).
reproduce: $(VENV)/.installed-demo data
	scripts/reproduce.sh

# The studies at their committed settings, into docs/studies/ (scripts/studies.sh)
# (each study within 15 minutes on two idle cores; docs/studies/RUN.txt records each run).
studies: $(VENV)/.installed-demo data
	PY=$(PY) scripts/studies.sh

# Speed benchmarks, side by side in one run: sized to the host, at most about 15 minutes
# (bench/run.py --budget); run it on an idle machine.
bench: $(VENV)/.installed-test data
	$(PY) bench/run.py --out docs/performance.md
