"""Problems: the shared schema, the procedural generator, hub loaders, decontamination, previews."""

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
