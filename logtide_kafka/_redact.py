"""Replacing secret values in an event's metadata before it is encoded."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final

from logtide_kafka._encode import CYCLE, MAX_DEPTH, TOO_DEEP, unreadable

__all__ = ["DEFAULT_REDACT_KEYS", "REDACTED", "Redactor"]

#: Metadata keys whose values are never sent (matched case-insensitively, at any depth).
DEFAULT_REDACT_KEYS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
)
REDACTED: Final = "[REDACTED]"
#: At most this many containers are walked per event; the rest are replaced, so a huge
#: or self-referencing structure costs a bounded amount of work.
_MAX_NODES: Final = 10_000
_TOO_LARGE: Final = "<too large to redact>"
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_MAX_SAFE_KEYS: Final = 4096


class Redactor:
    """Replace the values of sensitive keys by ``"[REDACTED]"``, in dicts at any depth
    (also inside lists, tuples and dataclass instances, which orjson would encode).

    The top-level metadata dict is changed in place (every integration builds its own);
    nested containers are copied when something in them is replaced, never modified, so
    the application's own objects are left as they were.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str):  # redact="password" would otherwise mean p, a, s, …
            keys = (keys,)
        self.keys = frozenset(str(key).lower() for key in keys)
        # Keys (as written) already found harmless: the vocabulary of keys is small, so
        # after warm-up a flat event of known keys and plain values is cleared by two
        # C-level set checks, without a Python loop.
        self._safe: set[object] = set()

    def _sensitive(self, key: object) -> bool:
        if key in self._safe:
            return False
        if isinstance(key, str) and key.lower() in self.keys:
            return True
        if len(self._safe) < _MAX_SAFE_KEYS:
            self._safe.add(key)
        return False

    def redact(self, metadata: dict[str, Any]) -> None:
        """Redact ``metadata`` in place (nested containers are replaced by copies)."""
        if self._safe.issuperset(metadata) and _SCALARS.issuperset(map(type, metadata.values())):
            return
        walk = _Walk()
        for key, value in metadata.items():
            if self._sensitive(key):
                metadata[key] = REDACTED  # same keys: changing values while iterating is safe
            elif type(value) not in _SCALARS:
                clean = self._walk(value, 1, walk)
                if clean is not value:
                    metadata[key] = clean

    def _walk(self, value: Any, depth: int, walk: _Walk) -> Any:
        """Return ``value`` itself when nothing in it is sensitive, else a redacted copy."""
        try:
            return self._copy(value, depth, walk)
        except Exception:  # a container that cannot be read cannot be shown to be safe
            return unreadable(value)

    def _copy(self, value: Any, depth: int, walk: _Walk) -> Any:
        # type(), never value.__class__ or isinstance(): a lazy proxy (Django's
        # SimpleLazyObject whose loader fails) raises there, and is left to the encoder.
        kind = type(value)
        if issubclass(kind, Mapping):
            items: Iterable[tuple[Any, Any]] | None = value.items()
            # orjson cannot encode other Mappings (it would send str(value)): send a dict.
            changed = not issubclass(kind, dict)
        elif issubclass(kind, (list, tuple)):
            items, changed = None, False
        elif dataclasses.is_dataclass(kind):
            items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            changed = False  # orjson encodes it as this same dict of fields
        else:
            return value
        marker = id(value)
        if marker in walk.path:
            return CYCLE  # cut here, as the encoder would, so no secret loops past us
        if depth > MAX_DEPTH:  # containers nested deeper are replaced, as encoding does
            return TOO_DEEP
        walk.budget -= 1
        if walk.budget < 0:
            return _TOO_LARGE
        walk.path.add(marker)
        try:
            if items is None:
                sequence = [
                    item if type(item) in _SCALARS else self._walk(item, depth + 1, walk)
                    for item in value
                ]
                changed = any(new is not old for new, old in zip(sequence, value, strict=True))
                return sequence if changed else value
            out: dict[Any, Any] = {}
            for key, item in items:
                if self._sensitive(key):
                    out[key] = REDACTED
                    changed = True
                elif type(item) in _SCALARS:
                    out[key] = item
                else:
                    clean = out[key] = self._walk(item, depth + 1, walk)
                    changed = changed or clean is not item
            return out if changed else value
        finally:
            walk.path.discard(marker)


class _Walk:
    """The state of one event's walk: containers on the current path, and what is left of
    the budget of containers."""

    __slots__ = ("budget", "path")

    def __init__(self) -> None:
        self.budget = _MAX_NODES
        self.path: set[int] = set()
