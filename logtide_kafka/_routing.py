"""Choosing each event's topic: ``logs.{category}``.

Precedence, first match wins: an explicit ``category`` in the event's metadata, the
longest configured logger-name prefix, the event's level, then the default topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from logtide_kafka._event import is_a, normalize_level
from logtide_kafka._topic_name import ILLEGAL_TOPIC_CHAR as _ILLEGAL
from logtide_kafka._topic_name import LEGAL_TOPIC as _LEGAL
from logtide_kafka._topic_name import MAX_TOPIC_LENGTH as _MAX_TOPIC_LEN

__all__ = ["CATEGORIES", "DEFAULT_TOPIC", "TOPICS", "TOPIC_PREFIX", "Router", "category_topic"]

TOPIC_PREFIX: Final = "logs."
#: The categories of the documented topic layout (any other legal name is accepted too).
CATEGORIES: Final = ("application", "infrastructure", "security")
#: The topics of the documented layout.
TOPICS: Final = tuple(TOPIC_PREFIX + category for category in CATEGORIES)
DEFAULT_TOPIC: Final = "logs.application"
#: Replaced, in the default topic, by the event's service name: ``logs.{service}``.
SERVICE_PLACEHOLDER: Final = "{service}"

# Routing decisions are cached by (service, logger, level); bounded, since logger names
# and services can be made up at run time.
_MAX_CACHED: Final = 4096


def category_topic(category: object) -> str | None:
    """``logs.{category}``, or None when ``category`` cannot name a Kafka topic."""
    if not is_a(category, str):
        return None
    topic = TOPIC_PREFIX + category
    if len(topic) > _MAX_TOPIC_LEN or not _LEGAL.fullmatch(category):
        return None
    return topic


def _checked_category(category: object, where: str) -> str:
    topic = category_topic(category)
    if topic is None:
        raise ValueError(
            f"{where}: category {category!r} cannot name a topic "
            "(use letters, digits, '.', '_' and '-')"
        )
    return topic


class Router:
    """Pick the topic of each event; built once per integration from its configuration.

    ``topic`` is the default, and may contain ``{service}`` (``logs.{service}`` gives each
    service its own topic).  ``logger_categories`` maps logger-name prefixes to categories
    (``"sqlalchemy"`` matches ``sqlalchemy`` and ``sqlalchemy.engine``, not
    ``sqlalchemy_utils``); ``level_categories`` maps levels (names or numbers) to categories.
    Invalid configuration raises ``ValueError`` here, not at log time.
    """

    def __init__(
        self,
        topic: str = DEFAULT_TOPIC,
        logger_categories: Mapping[str, str] | None = None,
        level_categories: Mapping[str | int, str] | None = None,
    ) -> None:
        probe = topic.replace(SERVICE_PLACEHOLDER, "x")
        if len(probe) > _MAX_TOPIC_LEN or not _LEGAL.fullmatch(probe) or probe in {".", ".."}:
            raise ValueError(f"topic {topic!r} is not a legal Kafka topic name")
        self.topic = topic
        self._per_service = SERVICE_PLACEHOLDER in topic
        loggers = {
            str(prefix): _checked_category(category, f"logger_categories[{prefix!r}]")
            for prefix, category in (logger_categories or {}).items()
        }
        # Longest prefix first, so "app.auth" wins over "app" for "app.auth.login".
        self._loggers = sorted(loggers.items(), key=lambda item: -len(item[0]))
        self._levels: dict[str, str] = {}
        for level, category in (level_categories or {}).items():
            name, known = normalize_level(level)
            if not known:
                raise ValueError(f"level_categories: unknown level {level!r}")
            self._levels[name] = _checked_category(category, f"level_categories[{level!r}]")
        self._explicit: dict[str, str] = {}
        self._cache: dict[tuple[str, object, str], str] = {}
        #: The topic of every event without an explicit category, when no other rule is
        #: configured (None otherwise).
        self.fixed = None if self._per_service or self._loggers or self._levels else topic

    def route(self, service: str, level: str, metadata: Mapping[str, Any]) -> str:
        """The topic for an event of ``service`` at LogTide ``level`` with ``metadata``.

        An explicit ``metadata["category"]`` that cannot name a topic is ignored (it stays
        in the metadata) and the other rules decide.
        """
        category = metadata.get("category")
        if is_a(category, str):
            topic = self._explicit.get(category)
            if topic is None:
                topic = category_topic(category)
                if topic is not None and len(self._explicit) < _MAX_CACHED:
                    self._explicit[category] = topic
            if topic is not None:
                return topic
        if self.fixed is not None:
            return self.fixed
        logger = metadata.get("logger")
        cache_key = (service, logger if is_a(logger, str) else None, level)
        topic = self._cache.get(cache_key)
        if topic is None:
            topic = self._decide(service, cache_key[1], level)
            if len(self._cache) < _MAX_CACHED:
                self._cache[cache_key] = topic
        return topic

    def _decide(self, service: str, logger: object, level: str) -> str:
        if isinstance(logger, str):
            for prefix, topic in self._loggers:
                if logger == prefix or logger.startswith(prefix + "."):
                    return topic
        by_level = self._levels.get(level)
        if by_level is not None:
            return by_level
        if self._per_service:
            return self.topic.replace(SERVICE_PLACEHOLDER, _ILLEGAL.sub("-", service))
        return self.topic
