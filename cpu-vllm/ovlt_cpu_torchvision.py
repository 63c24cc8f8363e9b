"""Lets PyPI's torchvision import beside a CPU build of torch (the CPU .venv of `make setup`).

PyPI has no CPU torchvision for x86_64 and no source distribution: its wheel's C ops (`torchvision/_C.so`) link
CUDA's libraries and do not load on torch 2.13.0+cpu. torchvision is built for that case (`_has_ops()` is then
False and every op that needs `_C` says so when called), except that `torchvision/_meta_registrations.py` registers
fake kernels for two ops, `torchvision::nms` and `torchvision::qnms`, whether or not `_C` defined them, and the
import dies there. vLLM needs the import: its Qwen2-VL models import transformers' Qwen2-VL image processor, which
imports `torchvision.transforms.v2.functional` (pure Python).

This module, imported at interpreter start by `ovlt_cpu_torchvision.pth` (so in every process, vLLM's engine
core included), waits for the first `import torchvision`. Then, if torchvision's `_C` does not load, it declares
the schemas of those two ops (no kernels: calling them raises, as any op of a torchvision without `_C` does), and
lets the import go on. Where `_C` loads (a real CPU or CUDA build) it does nothing. It imports nothing before that.
"""

import importlib.abc
import importlib.util
import os
import sys

# The schemas torchvision's C++ code defines for the two ops (torchvision/csrc/ops/nms.cpp, quantized/cpu/qnms_kernel.cpp).
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES = []  # a torch.library.Library keeps its definitions only while it lives


class _DeclareWhenCOpsFail(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)  # once, and never for the lookup below
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return None
        import torch

        c_ops = os.path.join(list(spec.submodule_search_locations)[0], "_C.so")
        try:
            torch.ops.load_library(c_ops)
        except (OSError, ImportError):
            library = torch.library.Library("torchvision", "DEF")
            for schema in SCHEMAS:
                library.define(schema)
            _LIBRARIES.append(library)
        return spec


sys.meta_path.insert(0, _DeclareWhenCOpsFail())
