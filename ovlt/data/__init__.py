"""Problems: the shared schema, the procedural generator, hub loaders, decontamination, previews."""

from ovlt.data.decontaminate import decontaminate
from ovlt.data.hub import SOURCES, load_source
from ovlt.data.preview import show_problems
from ovlt.data.procedural import (
    DEFAULT_IMAGE_SIZE,
    FAMILIES,
    LEVELS,
    QUESTION_KINDS,
    generate,
    majority_baseline,
    question_kind,
    render,
    scene_key,
    solve,
)
from ovlt.data.schema import (
    ANSWER_TYPES,
    PROBLEM_FEATURES,
    format_question,
    option_letter,
    validate_problem,
)

__all__ = [
    "ANSWER_TYPES", "DEFAULT_IMAGE_SIZE", "FAMILIES", "LEVELS", "PROBLEM_FEATURES", "QUESTION_KINDS", "SOURCES",
    "decontaminate", "format_question", "generate", "load_source", "majority_baseline", "option_letter",
    "question_kind", "render", "scene_key", "show_problems", "solve", "validate_problem",
]
