"""Kafka's rule for topic names, defined once: the characters it allows and the length."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ILLEGAL_TOPIC_CHAR", "LEGAL_TOPIC", "MAX_TOPIC_LENGTH"]

#: The longest topic name Kafka accepts.
MAX_TOPIC_LENGTH: Final = 249
#: A topic name's characters (use ``fullmatch``).
LEGAL_TOPIC: Final = re.compile(r"[A-Za-z0-9._-]+")
#: One character Kafka does not allow in a topic name.
ILLEGAL_TOPIC_CHAR: Final = re.compile(r"[^A-Za-z0-9._-]")
