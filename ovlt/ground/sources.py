"""The names of the training sources a config may list, without their loaders: loading a config imports no data
library (`ovlt.ground.hub` holds the loaders, `ovlt.ground.procedural` the generator; a test keeps them equal)."""

from __future__ import annotations

import re

FAMILIES = ("chart", "geometry", "table", "counting")  # the procedural generator's, as `synthetic/<family>`
MATHV360K_SUBSETS = ("CLEVR-Math", "FigureQA", "GEOS", "GeoQA+", "Geometry3K", "IconQA", "MapQA", "Super-CLEVR",
                     "TabMWP", "UniGeo", "VizWiz")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip().lower()).strip("_.") or "unknown"


HUB_SOURCES = ("sft_seed", "grpo_medium", "grpo_hard", "geometry3k", "vizwiz", "figureqa", "tabmwp", "ai2d", "geos",
               *(f"mathv360k_{slug(subset)}" for subset in MATHV360K_SUBSETS))
SOURCE_NAMES = (*(f"synthetic/{family}" for family in FAMILIES), *HUB_SOURCES)
