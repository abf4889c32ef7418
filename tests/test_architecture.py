"""The layout ``docs/architecture.md`` describes: two wings that never import each other,
and a page that names every module the package has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logtide_kafka"
PAGE = PACKAGE.parent / "docs" / "architecture.md"
WINGS = ("producer", "pipeline")


def _imports(path: Path) -> set[str]:
    """The ``logtide_kafka`` modules one file imports, as dotted names (relative ones
    resolved), wherever the import statement is."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("logtide_kafka")}


def _wing_files(wing: str) -> list[Path]:
    return sorted((PACKAGE / wing).glob("*.py"))


@pytest.mark.parametrize("wing", WINGS)
def test_a_wing_never_imports_the_other(wing: str) -> None:
    other = next(w for w in WINGS if w != wing)
    files = _wing_files(wing)
    assert files, f"logtide_kafka/{wing}/ holds no module"
    crossing = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in _imports(path)
        if name == f"logtide_kafka.{other}" or name.startswith(f"logtide_kafka.{other}.")
    }
    assert crossing == set()


def test_the_shared_floor_imports_neither_wing() -> None:
    doors = {"__init__.py", "__main__.py", "cli.py", "stdlib.py", "structlog.py", "filters.py"}
    crossing = {
        f"{path.name} imports {name}"
        for path in sorted(PACKAGE.glob("_*.py"))
        if path.name not in doors
        for name in _imports(path)
        if any(name.startswith(f"logtide_kafka.{wing}") for wing in WINGS)
    }
    assert crossing == set()


def test_the_page_names_every_module() -> None:
    text = PAGE.read_text()
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    modules = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "testing" not in path.relative_to(PACKAGE).parts
    }
    # A row names a wing's module without its folder; the wing's heading gives it.
    missing = {m for m in modules if m not in named and Path(m).name not in named}
    assert missing == set()
    unknown = {
        n for n in named if not n.startswith("tests/") and not any(m.endswith(n) for m in modules)
    }
    assert unknown == set(), "the page names modules that do not exist"


@pytest.mark.parametrize("wing", WINGS)
def test_a_wings_table_lists_what_the_wing_holds(wing: str) -> None:
    section = PAGE.read_text().split(f"(`logtide_kafka/{wing}/`)", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    rows = {
        n
        for line in section.splitlines()
        if line.startswith("| `")
        for n in re.findall(r"`([\w]+\.py)`", line.split("|")[1])
    }
    assert rows == {path.name for path in _wing_files(wing)}
