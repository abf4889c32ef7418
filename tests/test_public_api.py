"""The public surface: each module's ``__all__`` is what ``docs/index.md`` lists.

As httpx does, a test that fails when the exports and the documented API drift apart: a
name exported but not documented, or documented but not exported (or not importable).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

INDEX = Path(__file__).resolve().parent.parent / "docs" / "index.md"
_SECTION = "## Public API at a glance"
_FROM = re.compile(r"From `(logtide_kafka(?:\.\w+)*)`")
_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
#: Modules whose pages list the API in full (docs/index.md only links them).
_LISTED_ELSEWHERE = frozenset({"logtide_kafka.pipeline.topics", "logtide_kafka.pipeline.lag"})


def _documented() -> dict[str, set[str]]:
    """Module → the names ``docs/index.md`` documents for it."""
    text = INDEX.read_text().split(_SECTION, 1)[1]
    found: dict[str, set[str]] = {}
    marks = list(_FROM.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        chunk = text[mark.end() : end]
        if mark.group(1) == "logtide_kafka":  # a table: the names are in its first column
            rows = [line.split("|")[1] for line in chunk.splitlines() if line.startswith("| `")]
            chunk = "\n".join(rows)
        found.setdefault(mark.group(1), set()).update(_NAME.findall(chunk))
    return found


DOCUMENTED = _documented()


def test_the_index_documents_the_modules_it_should() -> None:
    assert {"logtide_kafka", "logtide_kafka.producer", "logtide_kafka.testing"} <= set(DOCUMENTED)


@pytest.mark.parametrize("module", sorted(set(DOCUMENTED) - _LISTED_ELSEWHERE))
def test_exports_match_the_documented_api(module: str) -> None:
    exported = set(importlib.import_module(module).__all__)
    documented = DOCUMENTED[module]
    if module == "logtide_kafka.producer":
        # The index lists only what the package itself does not re-export.
        exported -= set(importlib.import_module("logtide_kafka").__all__)
    assert sorted(exported - documented) == [], "exported but not documented"
    assert sorted(documented - exported) == [], "documented but not exported"


@pytest.mark.parametrize(
    ("module", "name"),
    sorted(
        (module, name)
        for module, names in DOCUMENTED.items()
        if module not in _LISTED_ELSEWHERE
        for name in names
    ),
)
def test_every_documented_name_imports(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)
