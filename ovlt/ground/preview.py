"""A picture grid of problems for the notebooks."""

import textwrap

import datasets
from matplotlib.figure import Figure

from ovlt.ground.schema import format_question


def show_problems(dataset: datasets.Dataset, n: int = 8, cols: int = 4) -> Figure:
    """A grid of the first n problems: image, question with options, and the gold answer."""
    n = min(n, len(dataset))
    if n == 0:
        raise ValueError("show_problems needs a non-empty data set")
    rows = -(-n // cols)
    # a Figure, not pyplot: nothing global is left behind, and notebooks display the returned figure once
    figure = Figure(figsize=(3.2 * cols, 4.2 * rows), layout="constrained")
    for i, problem in enumerate(dataset.select(range(n))):
        axes = figure.add_subplot(rows, cols, i + 1)
        axes.imshow(problem["image"])
        axes.set_axis_off()
        text = "\n".join(textwrap.fill(line, 38) for line in format_question(problem).split("\n"))
        axes.set_title(f"{problem['id']}\n{text}\nanswer: {problem['answer']}", fontsize=7, loc="left")
    return figure
