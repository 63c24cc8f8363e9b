#!/usr/bin/env bash
# The prepared GPU check: one script, under 8 minutes, on a GPU machine with no network.
#   bash benchmarks/gpu_check.sh            # from the repository root
# Missing Python packages install from wheels carried along in ./wheels (make them beforehand, where there is
# network: `pip download -d wheels -r <(pip freeze --exclude-editable)`), never from the network.
# Prints: the tiny study's stages on CUDA (wall time per stage), generation throughput at batch 1 vs batched,
# SFT tokens/s and MFU and decode tokens/s vs roofline on a random 7B-shaped Qwen2.5-VL. Record the figures in
# benchmarks/RESULTS.md with the device name.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ! $PY -c "import ovlt, trl, transformers" 2>/dev/null; then
  [[ -d wheels ]] || { echo "ovlt is not installed and there is no ./wheels folder to install it from" >&2; exit 1; }
  $PY -m pip install -q --no-index --find-links wheels -e .
fi
$PY - <<'PY'
import torch; assert torch.cuda.is_available(), "no CUDA device visible"; print("torch", torch.__version__, torch.cuda.get_device_name())
PY
tmp=$(mktemp -d)
# 1. the tiny study on CUDA: the test-sized volumes of the embedded default, every stage kind
$PY - "$tmp" <<'PY'
import sys, yaml, pathlib
sys.path.insert(0, "tests")
from conftest import write_test_config
path = write_test_config(pathlib.Path(sys.argv[1]), device="auto", sft={"max_steps": 50}, grpo={"max_steps": 10})
print("config:", path)
PY
timeout 240 $PY benchmarks/study.py --config "$tmp/test-study.yaml"
# 2. generation: batch 1 vs batched on the tiny model
timeout 90 $PY benchmarks/generation.py
# 3. SFT and decoding speed on Qwen2.5-VL-7B's real shape
timeout 150 $PY benchmarks/gpu_speed.py
