"""The house: layers that import downward only (import-linter's contracts in pyproject.toml) and no import cycles."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the `ovlt` package under `root` with `root`'s pyproject.toml (in a subprocess: the linter
    reconfigures logging in its process)."""
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit("
                           "lint_imports(config_filename='pyproject.toml', no_cache=True))"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layer_contracts_hold():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_upward_import_breaks_the_contract_and_is_named(tmp_path):
    shutil.copytree(REPO / "ovlt", tmp_path / "ovlt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    scorer = tmp_path / "ovlt" / "scoring" / "answers.py"
    scorer.write_text(scorer.read_text() + "\nfrom ovlt.engines import models  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "ovlt.scoring.answers -> ovlt.engines.models" in done.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    graph = grimp.build_graph("ovlt", cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph) == [["a", "b"]]
