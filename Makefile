# ovlt: the study's commands. `make reproduce` runs the study, `make test` checks the project.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/tiny.yaml
RUN ?= $(basename $(notdir $(CONFIG)))
KERNEL := ovlt
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test reproduce report plan lab lint clean

# The venv is rebuilt only when pyproject.toml changes. torch 2.13.0 goes in first and explicitly: on CPU
# machines that takes the CPU wheel, where an open range would pull a CUDA build of several GB.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "ovlt (.venv)" >/dev/null
	touch $@

test: setup
	$(PY) -m pytest -q

reproduce: setup
	$(VENV)/bin/ovlt reproduce --config $(CONFIG) --run $(RUN)

report: setup
	$(VENV)/bin/ovlt report --run $(RUN)

plan: setup
	$(VENV)/bin/ovlt plan --config $(CONFIG)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs reports/*/ .pytest_cache
