"""The house: layers that import downward only (import-linter's contracts in pyproject.toml) and no import cycles."""

import ast
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
    scorer = tmp_path / "ovlt" / "scoring" / "matching.py"
    scorer.write_text(scorer.read_text() + "\nfrom ovlt.engines import models  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "ovlt.scoring.matching -> ovlt.engines.models" in done.stdout


# The one module that imports another by its dotted name: the registry, resolving a stage's "module:attribute".
IMPORTS_BY_NAME = {"ovlt/stages/registry.py"}


def imports_by_name(source: str) -> list[int]:
    """Lines that import a module by a name computed at run time (`importlib.import_module`, `__import__`): edges
    that neither import-linter nor a reader sees. `from importlib import metadata` is no such import."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib":
            found += [node.lineno for alias in node.names if alias.name in ("import_module", "__import__")]
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            found.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(node.lineno)
    return sorted(set(found))


def test_no_module_imports_another_by_name():
    found = {str(path.relative_to(REPO)): lines for path in sorted((REPO / "ovlt").rglob("*.py"))
             if (lines := imports_by_name(path.read_text(encoding="utf-8")))}
    assert set(found) <= IMPORTS_BY_NAME, {path: lines for path, lines in found.items() if path not in IMPORTS_BY_NAME}


def test_an_import_by_name_is_found():
    assert imports_by_name("import importlib\nimportlib.import_module('ovlt.stages.evaluation')\n") == [2]
    assert imports_by_name("from importlib import import_module\n") == [1]
    assert imports_by_name("x = __import__('os')\n") == [1]
    assert imports_by_name("from importlib import metadata\nmetadata.version('ovlt')\n") == []


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
