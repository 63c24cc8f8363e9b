"""What varies by vision-language architecture, in one registry keyed by the checkpoint's `model_type`.

Stage code names no architecture: it asks the registry (`architecture(config_or_model)`) for
- `vision`: the modules `freeze_vision` freezes, the vision encoder and its projector into the language model;
- `language`: the language model's module path, under which LoRA adapts (`lora_targets`): SigLIP-style vision towers
  name their attention projections `q_proj`/`k_proj`/`v_proj` too, and a frozen tower must not grow adapters;
- `budget`: how its processor spends image tokens, and so how the study's pixel budget (`data.image_min_pixels`,
  `image_max_pixels`, one `ImageBudget`) is honoured in the processor's own terms (`ImageBudget.apply`):
  - "pixels": dynamic resolution (Qwen2.5-VL, Qwen3-VL): every image is resized to between the two bounds;
  - "tiles": the image is cut into fixed-size tiles (InternVL: up to `max_patches` tiles of 448 px plus a thumbnail;
    SmolVLM: a grid of `max_image_size` tiles plus the whole image; LLaVA-OneVision: a grid from
    `image_grid_pinpoints` plus the whole image): the budget caps the tiles;
  - "fixed": one image at a fixed size (Gemma 3 without pan-and-scan: 896 px, 256 tokens): nothing to cap;
- `reload_on_resume`: whether `save_pretrained` writes the hub's older key names (`language_model.model.*`, `visual.*`),
  which the Trainer's resume then matches to none of the model's (transformers issue 43701, found on Qwen2.5-VL), so
  `training.common.load_weights` copies the checkpoint's weights in. Measured on tiny models of each architecture in
  transformers 5.17 (docs/students.md): Qwen2.5-VL, Gemma 3, InternVL and LLaVA-OneVision save the older names;
  Qwen3-VL and SmolVLM save their own.

The registry itself imports nothing heavy: `ovlt plan` reads it without transformers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Architecture:
    model_type: str
    name: str
    vision: tuple[str, ...]
    language: str
    budget: str
    reload_on_resume: bool = False
    hub_names: str = ""  # a pattern of its checkpoints' hub names, for `ovlt plan`, which loads no config
    pixels_per_token: int | None = None  # "pixels" budgets: one image token per merged patch of this many pixels


ARCHITECTURES = {a.model_type: a for a in (
    Architecture("qwen2_5_vl", "Qwen2.5-VL", ("model.visual",), "model.language_model", "pixels",
                 reload_on_resume=True, hub_names=r"Qwen2\.5-VL|MiMo-VL", pixels_per_token=28 * 28),
    Architecture("qwen3_vl_moe", "Qwen3-VL MoE", ("model.visual",), "model.language_model", "pixels",
                 hub_names=r"Qwen3-VL-\d+B-A\d+B", pixels_per_token=32 * 32),  # before Qwen3-VL: its names match both
    Architecture("qwen3_vl", "Qwen3-VL", ("model.visual",), "model.language_model", "pixels", hub_names=r"Qwen3-VL",
                 pixels_per_token=32 * 32),
    Architecture("gemma3", "Gemma 3", ("model.vision_tower", "model.multi_modal_projector"), "model.language_model",
                 "fixed", reload_on_resume=True, hub_names=r"(?i)gemma-3"),
    Architecture("internvl", "InternVL (transformers format)", ("model.vision_tower", "model.multi_modal_projector"),
                 "model.language_model", "tiles", reload_on_resume=True, hub_names=r"InternVL"),
    Architecture("smolvlm", "SmolVLM", ("model.vision_model", "model.connector"), "model.text_model", "tiles",
                 hub_names=r"SmolVLM"),
    Architecture("llava_onevision", "LLaVA-OneVision",
                 ("model.vision_tower", "model.multi_modal_projector", "model.image_newline"), "model.language_model",
                 "tiles", reload_on_resume=True, hub_names=r"(?i)llava-onevision"),
)}


def architecture(config_or_model) -> Architecture:
    """The registry entry of a model, its config, or a config's `model_type`; a clear error for any other."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(f"model type {model_type!r} is not a student ovlt knows; known: {', '.join(ARCHITECTURES)} "
                         "(ovlt.engines.architectures)")
    return ARCHITECTURES[model_type]


def architecture_of_name(hub_name: str) -> Architecture | None:
    """The architecture a hub name belongs to, by the registry's name patterns; None when none matches."""
    return next((a for a in ARCHITECTURES.values() if a.hub_names and re.search(a.hub_names, hub_name)), None)


def submodule(model, path: str):
    """The module (or parameter) at a dotted path, with an error naming the architecture when it is not there."""
    found = model
    for part in path.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise TypeError(f"{type(model).__name__} has no {path} (ovlt.engines.architectures expects it for "
                            f"{getattr(model.config, 'model_type', '?')})")
    return found


def vision_parameters(model) -> list:
    """The parameters `freeze_vision` freezes: those of the architecture's vision modules."""
    out = []
    for path in architecture(model).vision:
        found = submodule(model, path)
        out += list(found.parameters()) if hasattr(found, "parameters") else [found]
    return out


def lora_targets(model_type: str, names: list[str]) -> str:
    """PEFT's `target_modules` as a regular expression (fully matched against module names): the projections
    `names` inside the language model only."""
    language = re.escape(architecture(model_type).language)
    return rf"{language}\..*\.({'|'.join(map(re.escape, names))})"


def set_pixel_bounds(image_processor, min_pixels: int | None = None, max_pixels: int | None = None):
    """Resize every image to between `min_pixels` and `max_pixels` pixels (None keeps that bound as it is).

    An image of max_pixels pixels is about max_pixels / 784 visual tokens (one per 28x28 merged patch): a 12 MP
    phone photo under the checkpoint's own bound is thousands, longer than TRL's and vLLM's sequence limits.
    The bounds go into a fresh instance-level `size` (what resizing, token counting and `save_pretrained` read):
    the image processor's own min_pixels/max_pixels route writes into the class-level default `size` dict in
    transformers 5.17. The instance's min_pixels/max_pixels get the same values, because `preprocess` lets them
    override `size` and vLLM's Qwen2-VL token counting reads them. (Qwen2.5-VL's 28x28; Qwen3-VL merges 32x32.)
    """
    from transformers.image_utils import SizeDict  # here: `ovlt plan` reads the registry without transformers

    if min_pixels is None and max_pixels is None:
        return image_processor
    low = min_pixels if min_pixels is not None else image_processor.size["shortest_edge"]
    high = max_pixels if max_pixels is not None else image_processor.size["longest_edge"]
    if not 0 < low <= high:
        raise ValueError(f"image pixel bounds must satisfy 0 < min_pixels <= max_pixels, got {low} and {high}")
    image_processor.size = SizeDict(shortest_edge=low, longest_edge=high)
    image_processor.min_pixels, image_processor.max_pixels = low, high
    return image_processor


@dataclass(frozen=True)
class ImageBudget:
    """The pixels every image may take: between `min_pixels` and `max_pixels` (None keeps the checkpoint's own bound;
    both None, `CHECKPOINT_BUDGET`, keeps the checkpoint's setting). One value travels from the study config (`of`) to
    wherever images are processed, and puts itself on a processor (`apply`) or into vLLM's processor call
    (`processor_kwargs`) in the architecture's own terms."""

    min_pixels: int | None = None
    max_pixels: int | None = None

    @classmethod
    def of(cls, data) -> ImageBudget:
        """The study's budget: its config's `data.image_min_pixels` and `image_max_pixels`."""
        return cls(data.image_min_pixels, data.image_max_pixels)

    def apply(self, model_type: str, image_processor) -> dict:
        """Put the budget on `image_processor` in its own terms; returns what was set (for the manifests).

        "pixels": both bounds (`set_pixel_bounds`). "tiles": the most tiles of the processor's own tile size whose
        pixels, the whole-image view included, fit in `max_pixels` (at least one view); `min_pixels` does not apply.
        "fixed": nothing to set; a budget below the one fixed view is logged, not met.
        """
        kind = architecture(model_type).budget
        if kind == "pixels":
            set_pixel_bounds(image_processor, self.min_pixels, self.max_pixels)
            return {"kind": kind, "min_pixels": image_processor.size["shortest_edge"],
                    "max_pixels": image_processor.size["longest_edge"]}
        if kind == "fixed":
            side = image_processor.size["height"]
            if self.max_pixels is not None and self.max_pixels < side * side:
                log.warning("%s takes every image at %dx%d px: the budget of %d pixels cannot be met", model_type,
                            side, side, self.max_pixels)
            return {"kind": kind, "side": side}
        if self.max_pixels is None:
            return {"kind": kind, "budget": "the checkpoint's"}
        recorded = {"kind": kind, **_TILE_BUDGETS[model_type](image_processor, self.max_pixels)}
        if recorded["floor"]:
            log.warning("%s: its fewest views (%s) hold more than the budget of %d pixels: they are kept", model_type,
                        recorded, self.max_pixels)
        return recorded

    def processor_kwargs(self, model_type: str, image_processor) -> dict:
        """The budget as keyword arguments of the processor's call, which vLLM takes as `mm_processor_kwargs` (vLLM
        builds its own processor from the checkpoint's files, so a budget set on ours does not reach it). "pixels":
        the two bounds. InternVL: `max_patches`; SmolVLM: `size` and `do_image_splitting`. LLaVA-OneVision's grid and
        Gemma 3's fixed view are not call arguments: vLLM uses the checkpoint's (a checkpoint ovlt trained carries the
        budget). `image_processor` is needed for tiles only."""
        kind = architecture(model_type).budget
        if kind == "pixels":
            return {k: v for k, v in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)) if v is not None}
        if kind == "fixed" or self.max_pixels is None or model_type == "llava_onevision":
            return {}
        recorded = self.apply(model_type, image_processor)
        if model_type == "internvl":
            return {"max_patches": recorded["max_patches"]}
        return {"size": {"longest_edge": recorded["longest_edge"]}, "do_image_splitting": recorded["splitting"]}

    @property
    def given(self) -> bool:
        return self.min_pixels is not None or self.max_pixels is not None


CHECKPOINT_BUDGET = ImageBudget()  # the checkpoint's own setting, as saved


def _internvl_tiles(image_processor, max_pixels: int) -> dict:
    # Cut into up to max_patches tiles; with more than one, a thumbnail of the whole image is added.
    tile = image_processor.size["height"]
    views = max(1, max_pixels // (tile * tile))
    patches = views - 1 if views >= 3 else 1
    image_processor.max_patches = patches
    image_processor.min_patches = min(image_processor.min_patches, patches)
    return {"tile": tile, "max_patches": patches, "floor": tile * tile > max_pixels}


def _smolvlm_tiles(image_processor, max_pixels: int) -> dict:
    # Resized to a longest edge of k tiles, cut into at most k x k tiles, plus the whole image.
    tile = image_processor.max_image_size["longest_edge"]
    views = max_pixels // (tile * tile)
    k = max(1, math.isqrt(max(views - 1, 1)))
    image_processor.size = {"longest_edge": k * tile}
    image_processor.do_image_splitting = views >= 2
    return {"tile": tile, "longest_edge": k * tile, "splitting": image_processor.do_image_splitting,
            "floor": tile * tile > max_pixels}


def _llava_onevision_tiles(image_processor, max_pixels: int) -> dict:
    # A grid from image_grid_pinpoints, plus the whole image at the tile size.
    tile = image_processor.size["height"]
    grids = sorted(image_processor.image_grid_pinpoints, key=lambda hw: hw[0] * hw[1])
    kept = [hw for hw in grids if hw[0] * hw[1] + tile * tile <= max_pixels]
    image_processor.image_grid_pinpoints = [list(hw) for hw in kept or grids[:1]]
    return {"tile": tile, "largest_grid": image_processor.image_grid_pinpoints[-1], "floor": not kept}


_TILE_BUDGETS = {"internvl": _internvl_tiles, "smolvlm": _smolvlm_tiles, "llava_onevision": _llava_onevision_tiles}
