"""The documentation stays inside the repository and true to it.

- No product file points to notes that live beside the project (`shared/`, its STACK and DESIGN notes): a user's
  clone does not have them.
- Every relative link and every repository path that README.md and docs/*.md mention exists.
- Every `docs/<page>.md, "<Section>"` pointer, in code, configs or docs, names a heading of that page.
- Every dotted `ovlt.…` name in README.md and docs/*.md is a module, or an attribute of one, that exists.

Each checker takes text and returns the problems it finds, so each is also shown failing on a bad example.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What a user's clone ships and runs. tests/ is left out: tests/helpers.py looks for the scorer's conformance
# fixtures beside the project (they are third-party benchmark responses, never copied into the repository).
PRODUCT_DIRS = ("ovlt", "docs", "configs", "notebooks", "benchmarks")
PRODUCT_FILES = ("README.md", "Makefile", "pyproject.toml", "environment.yml")
OUTSIDE = re.compile(r"shared/|STACK\.md|DESIGN\.md|[\"']shared[\"']")
# benchmarks/scoring.py measures the scorer's speed on those same fixtures and looks for them where
# tests/helpers.py does ($OVLT_FIXTURES, else the CI layout beside the project): a developer's measurement, not
# something the study reads. This one line is the exception, and the only one.
ALLOWED_OUTSIDE = {("benchmarks/scoring.py", 'Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures"))')}

DOCS = ("README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")))
# Folders whose contents a study writes (never in the repository): paths under them are examples, not files.
OUTPUT_DIRS = ("runs", "reports", ".rehearsal", "wheels")


# --- helpers ----------------------------------------------------------------------------------------------------


@cache
def tracked_files() -> tuple[str, ...]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return tuple(line for line in out.splitlines() if line and (REPO / line).is_file())


def product_files() -> list[str]:
    return [f for f in tracked_files() if f in PRODUCT_FILES or f.split("/", 1)[0] in PRODUCT_DIRS]


def read(path: str) -> str | None:
    try:
        return (REPO / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:  # a binary file: nothing to point anywhere
        return None


def without_fences(markdown: str) -> str:
    """Markdown with fenced code blocks blanked (line count kept)."""
    return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), markdown, flags=re.M | re.S)


def headings(markdown: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", without_fences(markdown), re.M)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", ""))
    return text.replace(" ", "-")


# --- the checkers -----------------------------------------------------------------------------------------------


def outside_pointers(path: str, text: str) -> list[str]:
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        if OUTSIDE.search(line) and not any(path == p and snippet in line for p, snippet in ALLOWED_OUTSIDE):
            problems.append(f"{path}:{n}: points outside the repository: {line.strip()[:120]}")
    return problems


def _top_level() -> set[str]:
    return {f.split("/", 1)[0] for f in tracked_files()} - set(OUTPUT_DIRS)


def _exists(target: str) -> bool:
    target = target.rstrip("/")
    return (REPO / target).exists()


def missing_paths(path: str, markdown: str, top_level: set[str] | None = None) -> list[str]:
    """Relative links, and repository paths in backticks or plain text, that do not exist."""
    top_level = _top_level() if top_level is None else top_level
    text, base = without_fences(markdown), Path(path).parent
    problems = []
    for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        target = m.group(1)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file, _, anchor = target.partition("#")
        resolved = (base / file).as_posix()
        if not _exists(resolved):
            problems.append(f"{path}: link to {target}: no such file")
        elif anchor and resolved.endswith(".md") and anchor not in {slug(h) for h in headings(read(resolved) or "")}:
            problems.append(f"{path}: link to {target}: no such heading in {resolved}")
    candidates = re.findall(r"`([^`\s]+)`", text)
    candidates += re.findall(r"(?<![\w/.`-])((?:[\w-]+/)+[\w.-]+\.[A-Za-z]{1,5})\b", text)
    for candidate in candidates:
        candidate = re.sub(r":\d+$", "", candidate)  # path:line
        if not re.fullmatch(r"[\w./-]+", candidate) or candidate.split("/", 1)[0] not in top_level:
            continue
        if "/" not in candidate and candidate not in top_level:
            continue
        if not _exists(candidate):
            problems.append(f"{path}: mentions {candidate}: no such file or folder")
    return sorted(set(problems))


# `docs/<page>.md, "<Section>"` or `README.md, "<Section>"`, the page name possibly in backticks, the section possibly
# on the next line (of a comment, too).
POINTER = re.compile(r"((?:docs/[\w-]+|README)\.md)`?,\s*(?:#\s*)?\"([^\"]+)\"")


def _heading_names(page_text: str) -> set[str]:
    """A page's headings, lower case, each also without a trailing parenthesis ("What it shows (measured)")."""
    names = set()
    for heading in headings(page_text):
        names |= {heading.lower(), re.sub(r"\s*\([^()]*\)$", "", heading).lower()}
    return names


def broken_section_pointers(path: str, text: str, pages: dict[str, str] | None = None) -> list[str]:
    """Pointers whose page has no heading of that name (case aside), or whose section name is cut by a line break.
    `pages` stands in for the repository's pages (the examples below)."""
    problems = []
    for m in POINTER.finditer(text):
        page, section = m.group(1), m.group(2)
        page_text = (pages or {}).get(page) if pages is not None else read(page) if (REPO / page).is_file() else None
        if "\n" in section:
            problems.append(f'{path}: the section name in {page}, "{section}" is cut by a line break')
        elif page_text is None:
            problems.append(f"{path}: points to {page}, which does not exist")
        elif section.lower() not in _heading_names(page_text):
            problems.append(f'{path}: points to {page}, "{section}": no such heading')
    return problems


def _module_names(source: str) -> dict[str, set[str]]:
    """Top-level names of a module, and the names defined in each of its classes."""
    tree = ast.parse(source)
    names: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[""].add(node.name)
            if node.name == "__getattr__":  # a module's lazy attributes (PEP 562): the names it compares against
                names[""].update(leaf.value for leaf in ast.walk(node)
                                 if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str))
            if isinstance(node, ast.ClassDef):
                members = names.setdefault(node.name, set())
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        members.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[""].add(leaf.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names[""].update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@cache
def _resolves(dotted: str) -> bool:
    """Walk down packages with find_spec (which imports only the packages above a name, never the module itself);
    the names after the first plain module are looked up in its source."""
    parts, spec = dotted.split("."), None
    for cut in range(1, len(parts) + 1):
        try:
            found = importlib.util.find_spec(".".join(parts[:cut]))
        except (ImportError, ValueError):
            found = None
        if found is None:  # the rest are attributes of the last module or package found (its __init__)
            break
        spec = found
        if spec.submodule_search_locations is None:  # a plain module: the rest are attributes
            break
    else:
        return True
    if spec is None:
        return False
    rest = parts[len(spec.name.split(".")):]
    if not rest:
        return True
    if spec.origin is None or not spec.origin.endswith(".py"):
        return False
    names = _module_names(Path(spec.origin).read_text(encoding="utf-8"))
    if rest[0] not in names[""]:
        return False
    return len(rest) == 1 or (len(rest) == 2 and rest[1] in names.get(rest[0], set()))


def unresolved_names(path: str, markdown: str) -> list[str]:
    """Dotted `ovlt.…` names that are neither a module nor an attribute (or class member) of one."""
    names = set(re.findall(r"(?<![\w/])ovlt(?:\.[A-Za-z_]\w*)+", markdown))
    return [f"{path}: {name} does not resolve" for name in sorted(names) if not _resolves(name)]


# --- the checks on the repository -------------------------------------------------------------------------------


def test_no_product_file_points_outside_the_repository():
    problems = [p for f in product_files() if (text := read(f)) is not None for p in outside_pointers(f, text)]
    assert not problems, "\n".join(problems)


def test_every_path_and_link_in_the_docs_exists():
    problems = [p for f in DOCS for p in missing_paths(f, read(f))]
    assert not problems, "\n".join(problems)


def test_every_section_pointer_names_a_heading():
    problems = [p for f in product_files() if (text := read(f)) is not None for p in broken_section_pointers(f, text)]
    assert not problems, "\n".join(problems)


def test_the_findings_page_is_pointed_to_by_section():
    """The code's pointers into docs/findings.md exist and each lands on a heading (checked above)."""
    pointers = [m for f in product_files() if (text := read(f)) for m in POINTER.finditer(text)
                if m.group(1) == "docs/findings.md"]
    assert pointers


def test_every_ovlt_name_in_the_docs_resolves():
    problems = [p for f in DOCS for p in unresolved_names(f, read(f))]
    assert not problems, "\n".join(problems)


# --- each checker fails where it should -------------------------------------------------------------------------


def test_outside_pointers_are_found():
    assert outside_pointers("x.py", "# see shared/DESIGN.md\nok\n# STACK.md, 'Learning'")[0].startswith("x.py:1:")
    assert len(outside_pointers("x.py", 'p = REPO.parent / "shared" / "fixtures"')) == 1
    assert outside_pointers("x.py", "nothing outside") == []
    line = 'Path(os.environ.get("OVLT_FIXTURES", REPO.parent / "shared" / "fixtures")) / "m"'
    assert outside_pointers("benchmarks/scoring.py", line) == []
    assert outside_pointers("benchmarks/other.py", line)


def test_missing_paths_are_found():
    top = {"docs", "configs", "ovlt", "README.md"}
    text = ("See [the design](docs/nowhere.md), `configs/tiny.yaml`, `configs/missing.yaml`, ovlt/ground/gone.py and "
            "[findings](docs/findings.md#no-such-heading).\n```\nconfigs/in_a_fence.yaml\n```\n`runs/<run>/data` "
            "`synthetic/chart`")
    problems = missing_paths("README.md", text, top)
    assert any("docs/nowhere.md" in p for p in problems)
    assert any("configs/missing.yaml" in p for p in problems)
    assert any("ovlt/ground/gone.py" in p for p in problems)
    assert any("no-such-heading" in p for p in problems)
    assert not any("tiny.yaml" in p or "in_a_fence" in p or "runs/" in p or "synthetic" in p for p in problems)
    assert missing_paths("docs/x.md", "[up](../README.md) [scoring](scoring.md)", top) == []


def test_broken_section_pointers_are_found():
    pages = {"docs/findings.md": "# Findings\n## Versions that work together\n### Learning on CPU\n",
             "README.md": "# ovlt\n### What it shows (measured, 2 cores)\n"}
    good = ['pins (docs/findings.md, "Versions that work together")', '# measured (docs/findings.md,\n    # "Learning on CPU")',
            'see `docs/findings.md`, "learning on cpu"', '(README.md, "What it shows")']
    for text in good:
        assert broken_section_pointers("x.py", text, pages) == [], text
    bad = ['see docs/findings.md, "No such section"', 'see docs/nowhere.md, "Anything"',
           'see docs/findings.md, "Learning\non CPU"', 'see `README.md`, "Findings (measured)"']
    for text in bad:
        assert len(broken_section_pointers("x.py", text, pages)) == 1, text


def test_unresolved_names_are_found():
    text = ("`ovlt.scoring.matching.score`, `ovlt.ground.artifacts.Stage.finish`, `ovlt.study`, python -m ovlt.rehearsal. "
            "`ovlt.study.open_study` (a package's attribute), `ovlt.ground.config.StudyConfig.needs_hub`. "
            "Gone: `ovlt.answers`, `ovlt.scoring.matching.no_such_function`, `ovlt.ground.artifacts.Stage.nothing`, "
            "`ovlt.study.pipeline.reproduce`.")
    problems = unresolved_names("x.md", text)
    assert [p.split(": ")[1] for p in problems] == [
        "ovlt.answers does not resolve", "ovlt.ground.artifacts.Stage.nothing does not resolve",
        "ovlt.scoring.matching.no_such_function does not resolve", "ovlt.study.pipeline.reproduce does not resolve"]


def test_headings_and_slugs():
    page = "# Title\n```\n# not a heading\n```\n## Learning on CPU\n### `ovlt plan`: GPU-hours\n"
    assert headings(page) == ["Title", "Learning on CPU", "`ovlt plan`: GPU-hours"]
    assert slug("Learning on CPU") == "learning-on-cpu"
    assert slug("`ovlt plan`: GPU-hours") == "ovlt-plan-gpu-hours"
