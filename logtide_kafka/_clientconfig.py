"""librdkafka settings from the command line: ``--command-config FILE`` and ``-X key=value``.

Every ``logtide-kafka`` command takes them the way Kafka's own tools (``--command-config``)
and kcat (``-X``) do; this module parses them once for all commands.  The file is read as
Java properties (``java.util.Properties.load``), so the ``client.properties`` a team already
hands to ``kafka-consumer-groups.sh`` works as it is: ``key=value``, ``key: value`` or
``key value`` lines, ``#`` and ``!`` comments, backslash escapes and continuation lines.

Secrets are never shown: errors name a key and a line, never a value, and anything that
displays settings masks those of :func:`is_secret` keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "MASK",
    "ClientConfig",
    "ConfigError",
    "is_secret",
    "load_client_config",
    "parse_setting",
    "read_properties",
]

#: What a secret value is shown as.
MASK: Final = "[hidden]"
# Keys whose values are credentials or key material: passwords and passphrases, client
# secrets, PEM keys and certificates given inline, a Java JAAS line (it holds the password),
# OAUTHBEARER settings (unsecured JWTs, extensions).  Matched anywhere in the key, so a
# misspelt ``sasl.pasword`` is masked as well.
_SECRET: Final = re.compile(
    r"pass(word|wd|phrase)?|pasword|secret|credential|token|jaas|\.pem$|(^|[._])key$"
    r"|oauthbearer\.config",
    re.IGNORECASE,
)
# confluent-kafka's settings that take Python objects (functions, a Logger), not text.
_PYTHON_ONLY: Final = frozenset(
    {"error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_delivery", "on_commit", "logger"}
)
_WHITESPACE: Final = " \t\f"
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class ConfigError(ValueError):
    """A settings file or ``-X`` argument that cannot be used; the text names no value."""


def is_secret(key: str) -> bool:
    """Whether ``key``'s value must never be shown (``sasl.password``, ``ssl.key.pem``...)."""
    return _SECRET.search(key) is not None


class ClientConfig(Mapping[str, str]):
    """librdkafka settings in the order they were given; ``repr`` masks secret values."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self._settings: dict[str, str] = dict(settings or {})

    def __getitem__(self, key: str) -> str:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def masked(self) -> dict[str, str]:
        """The settings with every secret value replaced by :data:`MASK`."""
        return {k: MASK if is_secret(k) else v for k, v in self._settings.items()}

    def secrets(self) -> list[str]:
        """The secret values (longest first), for scrubbing them out of any text."""
        values = {v for k, v in self._settings.items() if is_secret(k) and v.strip()}
        return sorted(values, key=len, reverse=True)

    def without(self, *keys: str) -> dict[str, str]:
        """A plain dict of the settings minus ``keys``."""
        return {k: v for k, v in self._settings.items() if k not in keys}

    def __repr__(self) -> str:
        return f"ClientConfig({self.masked()!r})"


def parse_setting(text: str) -> tuple[str, str]:
    """``key=value`` (a ``-X`` argument) as a pair; the error never repeats the value."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        shown = MASK if is_secret(key) or not key else repr(key)
        raise ConfigError(f"expected KEY=VALUE, not {shown}")
    if not key:
        raise ConfigError("expected KEY=VALUE: the key is empty")
    return key, value


def read_properties(path: str | Path) -> dict[str, str]:
    """The settings in a Java-properties file; :class:`ConfigError` names file and line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text") from exc
    settings: dict[str, str] = {}
    for number, logical in _logical_lines(text):
        try:
            key, value = _split(logical)
        except ConfigError as exc:
            raise ConfigError(f"{path}, line {number}: {exc}") from None
        settings[key] = value  # the last one wins, as in Java
    return settings


def load_client_config(
    file: str | Path | None = None, overrides: Iterable[tuple[str, str]] = ()
) -> ClientConfig:
    """The settings of ``file`` (if any), then ``overrides`` (``-X``, which win)."""
    settings = read_properties(file) if file is not None else {}
    settings.update(overrides)
    python_only = sorted(_PYTHON_ONLY & settings.keys())
    if python_only:
        raise ConfigError(
            f"{', '.join(python_only)}: confluent-kafka takes a Python object there, "
            "not text; it cannot be set from the command line"
        )
    return ClientConfig(settings)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each non-comment line, continuations joined."""
    lines = _LINE_END.split(text)  # not str.splitlines(): \f and \x1c... are not line ends
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].lstrip(_WHITESPACE)
        index += 1
        if not line or line[0] in "#!":
            continue
        # An odd number of trailing backslashes continues the line on the next one.
        while _continues(line) and index < len(lines):
            line = line[:-1] + lines[index].lstrip(_WHITESPACE)
            index += 1
        if _continues(line):
            line = line[:-1]  # a continuation at the end of the file continues into nothing
        yield number, line


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split(line: str) -> tuple[str, str]:
    """A logical line's key and value, unescaped (``java.util.Properties`` rules)."""
    position = 0
    while position < len(line):
        char = line[position]
        if char == "\\":
            position += 2
            continue
        if char in "=:" or char in _WHITESPACE:
            break
        position += 1
    key = _unescape(line[:position])
    rest = line[position:].lstrip(_WHITESPACE)
    separated = bool(rest)  # by `=`, `:` or whitespace; `key=` is an empty value
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    if not key:
        raise ConfigError("a setting without a key (expected key=value)")
    if not separated:  # Java reads a lone key as an empty value: here it is a mistake
        # Not repeated: the lone word may be a password pasted on a line of its own.
        raise ConfigError("a key without a value (expected key=value)")
    return key, _unescape(rest)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char != "\\" or position + 1 >= len(text):
            out.append(char)
            position += 1
            continue
        code = text[position + 1]
        if code == "u":
            digits = text[position + 2 : position + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ConfigError("malformed \\uXXXX escape")
            out.append(chr(int(digits, 16)))
            position += 6
        else:
            out.append(_ESCAPES.get(code, code))
            position += 2
    return "".join(out)
