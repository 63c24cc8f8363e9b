#!/usr/bin/env bash
# The prepared GPU check: one script, ~10 minutes (18 at its limits), on a GPU machine with no network.
#   bash benchmarks/gpu_check.sh            # from the repository root
# Python packages the machine lacks install from wheels carried along in ./wheels (or $OVLT_WHEELS), never from
# the network, into a scratch folder put on PYTHONPATH (the machine's own torch and transformers stay): make them
# beforehand where there is network, with benchmarks/gpu_wheels.sh.
# Prints, each check under its own time limit (a failed check does not stop the others):
#   1. SFT tokens/s and MFU, and decode tokens/s (batch 1 vs the roofline, and batched) on a randomly initialised
#      model of Qwen2.5-VL-7B's real shape;
#   2. generation throughput of the transformers backend on the tiny model at batch 1 vs batched (vLLM too where
#      it is installed);
#   3. the test-sized tiny study on CUDA, every stage kind through papermill, with the wall time of each stage;
#   4. the paper config's rehearsal (one iteration) with DeepSpeed ZeRO-3 through accelerate, and a GRPO stage killed
#      after a checkpoint and resumed (benchmarks/gpu_rehearsal.py).
# Record the figures in benchmarks/RESULTS.md with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WHEELS=${OVLT_WHEELS:-wheels}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ! $PY -c "import ovlt, trl, datasets, papermill, nbconvert, math_verify, pydantic" 2>/dev/null; then
  [[ -d $WHEELS ]] || { echo "ovlt's packages are missing and there is no $WHEELS folder to install them from" >&2; exit 1; }
  site=$(mktemp -d)
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl || exit 1
  # nbconvert finds its HTML templates under share/jupyter, which a --target install puts inside $site
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" JUPYTER_PATH="$site/share/jupyter"
fi
$PY - <<'PY' || exit 1
import torch, transformers, trl
assert torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__, torch.cuda.get_device_name())
PY

failed=()
check() {  # NAME SECONDS COMMAND...: one check under its own time limit
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  printf '\n=== %s (limit %ss)\n' "$name" "$limit"
  timeout "$limit" "$@"
  rc=$?
  printf '=== %s: exit %s after %ss\n' "$name" "$rc" "$((SECONDS - start))"
  ((rc == 0)) || failed+=("$name (exit $rc)")
}

check "Qwen2.5-VL-7B shape: SFT and decoding speed" 180 $PY benchmarks/gpu_speed.py
vllm_flag=$($PY -c "import vllm" 2>/dev/null && echo --vllm || echo)
[[ -n $vllm_flag ]] || echo "vLLM is not installed here: the generation check times the transformers backend only"
check "generation on the tiny model" 150 $PY benchmarks/generation.py --prompts 32 --repeats 2 --sample-rows 64 256 $vllm_flag
tmp=$(mktemp -d)
$PY - "$tmp" <<'PY'
import pathlib, sys
sys.path.insert(0, "tests")
from helpers import write_test_config
print("config:", write_test_config(pathlib.Path(sys.argv[1]), device="auto", sft={"max_steps": 50}, grpo={"max_steps": 10}))
PY
# ~20 s of kernel start and imports per notebook on an H100 machine: 234 s in all (benchmarks/RESULTS.md)
check "the test-sized tiny study on CUDA" 330 $PY benchmarks/study.py --config "$tmp/test-study.yaml"
$PY -c "import deepspeed" 2>/dev/null || echo "DeepSpeed is not installed here: the rehearsal check will fail at its first SFT"
check "the paper config's rehearsal on CUDA with ZeRO-3, and a GRPO killed and resumed" 420 \
  $PY benchmarks/gpu_rehearsal.py --iterations 1

if ((${#failed[@]})); then
  printf '\nfailed: %s\n' "${failed[@]}"
  exit 1
fi
echo; echo "all checks passed"
