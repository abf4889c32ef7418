"""The bad-input corpus: what applications pass to logging calls that JSON, UTF-8 or the
size limit cannot take as it is, each with the one outcome it must end in.

Every entry can go through the paths named in its ``paths``:

- ``handler``: ``case.log(logger)``, by default ``logger.info(message, extra=fields())``,
  into a :class:`~logtide_kafka.KafkaHandler` (with ``case.formatter()`` when set);
- ``send_log``: ``send_log("info", message, service, **fields())``;
- ``structlog``: ``{"event": message, **fields()}`` through ``KafkaProcessor``.

``expect`` maps a path into the delivered event (keys separated by ``/``; prefixed with
``handler:``, ``send_log:`` or ``structlog:`` when it holds for that path only) to the
value found there, or a :class:`Check`.  The outcomes are documented in
``docs/bad-input.md``; the producer's size limit in these entries is
``message.max.bytes`` = :data:`MESSAGE_MAX_BYTES`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
from collections import UserDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Final, Literal, cast

from logtide_kafka.producer import RECORD_OVERHEAD

__all__ = [
    "ABSENT",
    "CASES",
    "MAX_PAYLOAD",
    "MESSAGE_MAX_BYTES",
    "PATHS",
    "Case",
    "Check",
    "Outcome",
    "Path",
    "cases_for",
    "lookup",
    "mismatches",
]

Path = Literal["handler", "send_log", "structlog"]
PATHS: Final[tuple[Path, ...]] = ("handler", "send_log", "structlog")

#: The producer's ``message.max.bytes`` when the corpus runs: small, so the oversized
#: entries stay cheap; the default (1 000 000) is covered by its own test.
MESSAGE_MAX_BYTES: Final = 20_000
#: The largest payload the producer sends under that limit.
MAX_PAYLOAD: Final = MESSAGE_MAX_BYTES - RECORD_OVERHEAD
_HUGE: Final = 3 * MESSAGE_MAX_BYTES
_MARK: Final = re.compile(r"\u2026 \[truncated (\d+) bytes\]\Z", re.DOTALL)


class Outcome(enum.Enum):
    """How a logging call with bad input ends: always bounded, counted, never raised."""

    AS_IS = "delivered as-is"
    REPAIRED = "delivered repaired (encode_errors + 1)"
    TRUNCATED = "delivered truncated (truncated + 1)"
    REPAIRED_TRUNCATED = "delivered repaired and truncated (encode_errors + 1, truncated + 1)"
    FAILED = "not delivered: failed + 1, handleError called, the app not raising"
    STDLIB_RAISES = "raised by logging itself before the handler runs"

    @property
    def delivered(self) -> bool:
        return self not in {Outcome.FAILED, Outcome.STDLIB_RAISES}

    @property
    def repaired(self) -> bool:
        return self in {Outcome.REPAIRED, Outcome.REPAIRED_TRUNCATED}

    @property
    def truncated(self) -> bool:
        return self in {Outcome.TRUNCATED, Outcome.REPAIRED_TRUNCATED}


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on a delivered value, where equality is not the right test."""

    what: str
    test: Callable[[Any], bool]

    def __repr__(self) -> str:
        return self.what


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


#: Expected where a key must not be in the delivered event.
ABSENT: Final = _Absent()


def _fields() -> dict[str, Any]:
    return {}


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus entry: the input, the paths it applies to, and its outcome."""

    name: str
    outcome: Outcome
    expect: Mapping[str, object]
    message: object = "bad input"
    #: The metadata (``extra=``, keyword arguments, event dict keys), built fresh per use:
    #: cycles and released buffers cannot be shared between runs.
    fields: Callable[[], dict[str, Any]] = _fields
    #: The application's logging call on the handler path, when not the default.
    log: Callable[[logging.Logger], None] | None = None
    #: A formatter for the handler, built fresh per use.
    formatter: Callable[[], logging.Formatter] | None = None
    paths: frozenset[Path] = frozenset(PATHS)
    #: What logging itself raises into the app (``STDLIB_RAISES`` only).
    raises: type[Exception] | None = None

    def run_handler_call(self, logger: logging.Logger) -> None:
        """The application's call on the handler path."""
        if self.log is not None:
            self.log(logger)
        else:
            logger.info(self.message, extra=self.fields())


def cases_for(path: Path) -> list[Case]:
    """The entries that apply to ``path``."""
    return [case for case in CASES if path in case.paths]


def lookup(event: Mapping[str, Any], where: str) -> object:
    """The value at ``where`` (keys separated by ``/``) in a decoded event, or ABSENT."""
    value: object = event
    for key in where.split("/"):
        if not isinstance(value, Mapping) or key not in value:
            return ABSENT
        value = value[key]
    return value


def mismatches(case: Case, path: Path, event: Mapping[str, Any]) -> list[str]:
    """Every expectation of ``case`` on ``path`` that the decoded ``event`` breaks."""
    problems: list[str] = []
    for key, expected in case.expect.items():
        only, _, where = key.rpartition(":")
        if only and only != path:
            continue
        got = lookup(event, where)
        ok = expected.test(got) if isinstance(expected, Check) else got == expected
        if not ok:
            problems.append(f"{case.name} [{path}] {where}: expected {expected!r}, got {got!r}")
    return problems


# -- checks --------------------------------------------------------------------------------


def _startswith(prefix: str) -> Check:
    return Check(f"a string starting with {prefix!r}", lambda v: str(v).startswith(prefix))


def _sorted_is(items: list[Any]) -> Check:
    return Check(f"a list of {items!r} in any order", lambda v: sorted(v) == items)


def _cut_from(original: str) -> Check:
    """A start of ``original`` (whole code points) followed by the mark that counts exactly
    the UTF-8 bytes removed."""

    def test(value: object) -> bool:
        if not isinstance(value, str) or not (found := _MARK.search(value)):
            return False
        kept = value[: found.start()]
        removed = int(found.group(1))
        return (
            original.startswith(kept)
            and 0 < len(kept) < len(original)
            and len(kept.encode()) + removed == len(original.encode())
        )

    return Check(f"a start of {original[:12]!r}... ending with the truncation mark", test)


def _cut_at(levels: int) -> Check:
    """Nested ``{"down": ...}`` dicts cut, above ``levels``, to ``"<nested too deep>"``."""

    def test(value: object) -> bool:
        depth = 0
        while isinstance(value, dict) and "down" in value:
            value, depth = value["down"], depth + 1
        return value == "<nested too deep>" and depth < levels

    return Check(f'nesting cut to "<nested too deep>" within {levels} levels', test)


def _number(minimum: int) -> Check:
    return Check(f"an int > {minimum}", lambda v: isinstance(v, int) and v > minimum)


# -- values ----------------------------------------------------------------------------------


class Printable:
    def __str__(self) -> str:
        return "custom!"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


class Mute:
    """Neither ``str`` nor ``repr`` works."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Lazy:
    """Django's ``SimpleLazyObject`` whose loader fails (``request.user``): every proxied
    attribute raises, ``__class__`` included, so ``isinstance()`` on it raises too."""

    @property  # type: ignore[misc]  # mypy: __class__ is not meant to be a property
    def __class__(self) -> type:
        raise RuntimeError("loader failed")

    def __str__(self) -> str:
        raise RuntimeError("loader failed")

    def __repr__(self) -> str:
        raise RuntimeError("loader failed")

    def __len__(self) -> int:
        raise RuntimeError("loader failed")


def _lazy_everywhere() -> dict[str, Any]:
    return {
        "user": Lazy(),
        "nested": {"user": Lazy(), "password": "hunter2"},
        "items": [Lazy(), 1],
        "trace_id": Lazy(),
        "span_id": Lazy(),
        "category": Lazy(),
        "logger": Lazy(),
    }


class NotAString:
    def __str__(self) -> str:
        return 5  # type: ignore[return-value]  # noqa: PLE0307  # str() raises TypeError


class SurrogateStr:
    def __str__(self) -> str:
        return "bad \udc80 str"


class OddDict(dict[Any, Any]):
    """A dict subclass: encoded as the dict it is."""


class ItemsRaise(dict[str, Any]):
    """A dict subclass whose ``items()`` raises (anything that walks it, fails)."""

    def items(self) -> Any:
        raise RuntimeError("no items")


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


Pair = namedtuple("Pair", "x y")


class Exploding(logging.Formatter):
    """A formatter that fails on every record."""

    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter exploded")


class ReturnsDict(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return {"formatted": record.getMessage()}  # type: ignore[return-value]


def _cycle_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    return {"value": loop}


def _cycle_list() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return {"value": loop}


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["down"] = {}
        node = node["down"]
    return {"value": root}


def _released() -> dict[str, Any]:
    view = memoryview(b"gone")
    view.release()
    return {"value": view}


def _generator() -> Iterator[int]:
    yield 1


# -- the app's calls on the handler path ----------------------------------------------------


def _with_filter(
    change: Callable[[logging.LogRecord], None], message: str = "filtered"
) -> Callable[[logging.Logger], None]:
    """The app's call with a logger filter that changes the record first."""

    def log(logger: logging.Logger) -> None:
        def apply(record: logging.LogRecord) -> bool:
            change(record)
            return True

        logger.addFilter(apply)
        try:
            logger.info(message)
        finally:
            logger.removeFilter(apply)

    return log


def _set(name: object, value: object) -> Callable[[logging.LogRecord], None]:
    def change(record: logging.LogRecord) -> None:
        cast(dict[Any, Any], record.__dict__)[name] = value  # any key a filter may set

    return change


def _extra_with_non_str_keys(logger: logging.Logger) -> None:
    extra: dict[Any, Any] = {1: "one", (2, 3): "tuple"}  # typeshed says str keys; logging takes any
    logger.info("x", extra=extra)


def _exc_info_unprintable(logger: logging.Logger) -> None:
    class MuteError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    try:
        raise MuteError
    except MuteError:
        logger.exception("failed")


_HANDLER: Final[frozenset[Path]] = frozenset({"handler"})
_BIG_TEXT: Final = "".join(f"{n:07d} " for n in range(_HUGE // 8))  # never one repeated char
_EMOJI: Final = "\U0001f600" * (_HUGE // 4)
#: 10 MB: decoding all of it held the logging call for about two seconds (issue 12).
_TEN_MB: Final = 10_000_000
_LAZY: Final = "<unprintable Lazy>"


CASES: Final[tuple[Case, ...]] = (
    # -- metadata values orjson cannot encode as they are ------------------------------------
    Case(
        "set",
        Outcome.AS_IS,
        {"metadata/value": _sorted_is([1, 2, 3])},
        fields=lambda: {"value": {3, 1, 2}},
    ),
    Case(
        "frozenset",
        Outcome.AS_IS,
        {"metadata/value": _sorted_is(["a", "b"])},
        fields=lambda: {"value": frozenset("ab")},
    ),
    Case(
        "bytes_utf8",
        Outcome.AS_IS,
        {"metadata/value": "café"},
        fields=lambda: {"value": b"caf\xc3\xa9"},
    ),
    Case(
        "bytes_invalid_utf8",
        Outcome.AS_IS,
        {"metadata/value": "\\xff\\xfeok"},
        fields=lambda: {"value": b"\xff\xfeok"},
    ),
    Case(
        "bytearray_memoryview",
        Outcome.AS_IS,
        {"metadata/value": ["ab", "cd"]},
        fields=lambda: {"value": [bytearray(b"ab"), memoryview(b"cd")]},
    ),
    Case(
        "released_memoryview",
        Outcome.AS_IS,
        {"metadata/value": _startswith("<released memory at 0x")},
        fields=_released,
    ),
    Case(
        "custom_object",
        Outcome.AS_IS,
        {"metadata/value": "custom!"},
        fields=lambda: {"value": Printable()},
    ),
    Case(
        "str_raises",
        Outcome.AS_IS,
        {"metadata/value": "<unprintable Unprintable>"},
        fields=lambda: {"value": Unprintable()},
    ),
    Case(
        "str_and_repr_raise",
        Outcome.AS_IS,
        {"metadata/value": "<unprintable Mute>"},
        fields=lambda: {"value": Mute()},
    ),
    Case(
        "str_returns_non_str",
        Outcome.AS_IS,
        {"metadata/value": "<unprintable NotAString>"},
        fields=lambda: {"value": NotAString()},
    ),
    Case(
        "lazy_object_raising_on_class_str_repr_len",
        Outcome.AS_IS,
        {
            "metadata/user": _LAZY,
            "metadata/nested/user": _LAZY,
            "metadata/nested/password": "[REDACTED]",
            "metadata/items": [_LAZY, 1],
            "metadata/trace_id": _LAZY,  # not a valid id: kept in metadata
            "metadata/span_id": _LAZY,
            "trace_id": ABSENT,
            "metadata/category": _LAZY,  # cannot name a topic: the default topic
            "metadata/logger": _LAZY,
        },
        fields=_lazy_everywhere,
    ),
    Case(
        "lazy_object_as_message",
        Outcome.AS_IS,
        {"message": _LAZY, "handler:metadata/format_error": "RuntimeError: loader failed"},
        message=Lazy(),
    ),
    Case(
        "str_returns_lone_surrogate",
        Outcome.REPAIRED,
        {"metadata/value": "bad \ufffd str"},
        fields=lambda: {"value": SurrogateStr()},
    ),
    Case(
        "decimal_complex_generator",
        Outcome.AS_IS,
        {
            "metadata/value/0": "1.5",
            "metadata/value/1": "(1+2j)",
            "metadata/value/2": _startswith("<generator object"),
        },
        fields=lambda: {"value": {"0": Decimal("1.5"), "1": 1 + 2j, "2": _generator()}},
    ),
    Case(
        "dataclass",
        Outcome.AS_IS,
        {"metadata/value": {"x": 1, "y": [2]}},
        fields=lambda: {"value": Point(1, [2])},
    ),
    Case(
        "namedtuple",
        Outcome.AS_IS,
        {"metadata/value": "Pair(x=1, y=2)"},
        fields=lambda: {"value": Pair(1, 2)},
    ),
    Case(
        "nan_and_infinities",
        Outcome.AS_IS,
        {"metadata/value": [None, None, None]},
        fields=lambda: {"value": [float("nan"), float("inf"), float("-inf")]},
    ),
    Case(
        "int_over_64_bits",
        Outcome.REPAIRED,
        {"metadata/value": str(2**64)},
        fields=lambda: {"value": 2**64},
    ),
    Case(
        "int_under_minus_2_63",
        Outcome.REPAIRED,
        {"metadata/value": str(-(2**63) - 1)},
        fields=lambda: {"value": -(2**63) - 1},
    ),
    Case(
        "int_beyond_decimal_digit_limit",
        Outcome.REPAIRED,
        {"metadata/value": hex(10**5000)},
        fields=lambda: {"value": 10**5000},
    ),
    Case(
        "cycle_in_dict",
        Outcome.AS_IS,
        {"metadata/value": {"name": "loop", "self": "<cycle>"}},
        fields=_cycle_dict,
    ),
    Case("cycle_in_list", Outcome.AS_IS, {"metadata/value": ["<cycle>"]}, fields=_cycle_list),
    Case(
        "nesting_beyond_orjson_limit",
        Outcome.AS_IS,
        {"metadata/value": _cut_at(40)},
        fields=lambda: _deep(300),
    ),
    Case(
        "dict_subclass",
        Outcome.AS_IS,
        {"metadata/value": {"1": "x", "k": 2}},
        fields=lambda: {"value": OddDict({1: "x", "k": 2})},
    ),
    Case(
        "mapping_not_a_dict",
        Outcome.AS_IS,
        {"metadata/value": {"a": 1}},
        fields=lambda: {"value": UserDict({"a": 1})},
    ),
    # Redaction cannot look inside, so cannot show it holds no secret: it is replaced.
    Case(
        "mapping_whose_items_raise",
        Outcome.AS_IS,
        {"metadata/value": "<unreadable ItemsRaise>"},
        fields=lambda: {"value": ItemsRaise(a=1)},
    ),
    # -- keys --------------------------------------------------------------------------------
    Case(
        "non_str_keys",
        Outcome.AS_IS,
        {"metadata/value": {"1": "int", "null": "none", "2.5": "float", "false": "bool"}},
        fields=lambda: {"value": {1: "int", None: "none", 2.5: "float", False: "bool"}},
    ),
    Case(
        "tuple_key",
        Outcome.REPAIRED,
        {"metadata/value": {"(1, 2)": "t"}},
        fields=lambda: {"value": {(1, 2): "t"}},
    ),
    # ``{1: .., "1": ..}``: both become "1"; the JSON holds both, readers keep the last.
    Case(
        "keys_equal_once_stringified",
        Outcome.AS_IS,
        {"metadata/value": {"1": "str"}},
        fields=lambda: {"value": {1: "int", "1": "str"}},
    ),
    Case(
        "lone_surrogate_in_key",
        Outcome.REPAIRED,
        {"metadata/value": {"k\ufffd": 1}},
        fields=lambda: {"value": {"k\udc80": 1}},
    ),
    Case(
        "extra_with_non_str_keys",
        Outcome.REPAIRED,
        {"metadata/1": "one", "metadata/(2, 3)": "tuple"},
        log=_extra_with_non_str_keys,
        paths=_HANDLER,
    ),
    Case(
        "filter_adds_non_str_key",
        Outcome.AS_IS,
        {"metadata/42": "answer"},
        log=_with_filter(_set(42, "answer")),
        paths=_HANDLER,
    ),
    # -- text that is not valid UTF-8 ---------------------------------------------------------
    Case(
        "lone_surrogate_in_value",
        Outcome.REPAIRED,
        {"metadata/value": "a\ufffdb"},
        fields=lambda: {"value": "a\ud800b"},
    ),
    Case(
        "surrogate_pair_as_two_halves",
        Outcome.REPAIRED,
        {"metadata/value": "\U0001f600"},
        fields=lambda: {"value": "\ud83d\ude00"},
    ),
    Case(
        "surrogateescape_file_name",
        Outcome.REPAIRED,
        {"metadata/value": "/tmp/\ufffd.log"},
        fields=lambda: {"value": os.fsdecode(b"/tmp/\xff.log")},
    ),
    Case(
        "lone_surrogate_in_message",
        Outcome.REPAIRED,
        {"message": "boom \ufffd"},
        message="boom \udc80",
    ),
    # NUL, which LogTide cannot store, becomes U+FFFD (no counter: nothing was refused);
    # other control characters stay, escaped in the JSON.
    Case(
        "nul_and_control_characters",
        Outcome.AS_IS,
        {"message": "a\ufffdb\x1bc\n"},
        message="a\x00b\x1bc\n",
    ),
    Case(
        "nul_in_metadata_keys_and_values",
        Outcome.AS_IS,
        {"metadata/k\ufffd": "v\ufffd", "metadata/deep": {"l\ufffd": ["\ufffd", 1]}},
        fields=lambda: {"k\x00": "v\x00", "deep": {"l\x00": ["\x00", 1]}},
    ),
    # -- messages that are not strings ---------------------------------------------------------
    Case("empty_message", Outcome.AS_IS, {"message": "(empty message)"}, message=""),
    Case("message_dict", Outcome.AS_IS, {"message": "{'a': 1}"}, message={"a": 1}),
    Case("message_exception", Outcome.AS_IS, {"message": "boom"}, message=ValueError("boom")),
    Case("message_bytes", Outcome.AS_IS, {"message": "b'\\xff'"}, message=b"\xff"),
    Case(
        "message_none",
        Outcome.AS_IS,
        {"message": "None"},
        message=None,
        paths=frozenset({"handler", "send_log"}),
    ),
    Case(
        "event_none",
        Outcome.AS_IS,
        {"message": "(empty message)"},
        message=None,
        paths=frozenset({"structlog"}),
    ),
    Case(
        "message_str_raises",
        Outcome.AS_IS,
        {
            "message": "<unprintable Unprintable>",
            "handler:metadata/format_error": "RuntimeError: no str",
            "send_log:metadata/format_error": ABSENT,
            "structlog:metadata/format_error": ABSENT,
        },
        message=Unprintable(),
    ),
    # -- %-formatting ----------------------------------------------------------------------------
    Case(
        "format_too_few_args",
        Outcome.AS_IS,
        {
            "message": "%s %s",
            "metadata/format_args": "('x',)",
            "metadata/format_error": "TypeError: not enough arguments for format string",
        },
        log=lambda logger: logger.info("%s %s", "x"),  # noqa: PLE1206
        paths=_HANDLER,
    ),
    Case(
        "format_too_many_args",
        Outcome.AS_IS,
        {"message": "%s", "metadata/format_error": _startswith("TypeError: not all arguments")},
        log=lambda logger: logger.info("%s", 1, 2),  # noqa: PLE1205
        paths=_HANDLER,
    ),
    Case(
        "format_wrong_type",
        Outcome.AS_IS,
        {"message": "%d", "metadata/format_error": _startswith("TypeError: %d format")},
        log=lambda logger: logger.info("%d", "x"),
        paths=_HANDLER,
    ),
    Case(
        "format_missing_key",
        Outcome.AS_IS,
        {"message": "%(a)s %(b)s", "metadata/format_error": "KeyError: 'b'"},
        log=lambda logger: logger.info("%(a)s %(b)s", {"a": 1}),
        paths=_HANDLER,
    ),
    Case(
        "format_args_mapping",
        Outcome.AS_IS,
        {"message": "1 and 2"},
        log=lambda logger: logger.info("%(a)s and %(b)s", {"a": 1, "b": 2}),
        paths=_HANDLER,
    ),
    Case(
        "format_arg_str_raises",
        Outcome.AS_IS,
        {
            "message": "value: %s",
            "metadata/format_error": "RuntimeError: no str",
            "metadata/format_args": _startswith("(<"),
        },
        log=lambda logger: logger.info("value: %s", Unprintable()),
        paths=_HANDLER,
    ),
    Case(
        "format_arg_str_and_repr_raise",
        Outcome.AS_IS,
        {"message": "value: %s", "metadata/format_args": "<unrepresentable tuple>"},
        log=lambda logger: logger.info("value: %s", Mute()),
        paths=_HANDLER,
    ),
    Case(
        "format_mismatch_under_a_formatter",
        Outcome.AS_IS,
        {"message": "%s %s", "metadata/format_error": _startswith("TypeError")},
        log=lambda logger: logger.info("%s %s", "x"),  # noqa: PLE1206
        formatter=lambda: logging.Formatter("[%(levelname)s] %(message)s"),
        paths=_HANDLER,
    ),
    # -- formatters and records changed on the way --------------------------------------------
    Case("formatter_raises", Outcome.FAILED, {}, formatter=Exploding, paths=_HANDLER),
    Case(
        "formatter_returns_non_str",
        Outcome.AS_IS,
        {"message": "{'formatted': 'bad input'}"},
        formatter=ReturnsDict,
        paths=_HANDLER,
    ),
    Case(
        "filter_sets_name_to_none",
        Outcome.AS_IS,
        {"metadata/logger": None},
        log=_with_filter(_set("name", None)),
        paths=_HANDLER,
    ),
    Case(
        "filter_sets_created_to_text",
        Outcome.AS_IS,
        {"metadata/timestamp": "later"},
        log=_with_filter(_set("created", "later")),
        paths=_HANDLER,
    ),
    Case(
        "filter_sets_created_to_none",
        Outcome.AS_IS,
        {"metadata/timestamp": None},
        log=_with_filter(_set("created", None)),
        paths=_HANDLER,
    ),
    Case(
        "timestamp_in_milliseconds",
        Outcome.AS_IS,
        {"metadata/timestamp": 1_732_523_403_214},
        fields=lambda: {"timestamp": 1_732_523_403_214},
        paths=frozenset({"structlog"}),
    ),
    # Formatter.formatException fails on it too: handleError, as for a broken formatter.
    Case(
        "filter_sets_exc_info_to_text",
        Outcome.FAILED,
        {},
        log=_with_filter(_set("exc_info", "junk")),
        paths=_HANDLER,
    ),
    # Logger.callHandlers compares levelno with each handler's level: TypeError in the app.
    Case(
        "filter_sets_levelno_to_text",
        Outcome.STDLIB_RAISES,
        {},
        log=_with_filter(_set("levelno", "loud")),
        paths=_HANDLER,
        raises=TypeError,
    ),
    Case(
        "exception_unprintable",
        Outcome.AS_IS,
        {
            "metadata/exception/message": "<unprintable MuteError>",
            "metadata/exception/stack": _startswith("Traceback (most recent call last):"),
        },
        log=_exc_info_unprintable,
        paths=_HANDLER,
    ),
    Case(
        "logger_adapter",
        Outcome.REPAIRED,
        {"message": "via adapter", "metadata/request": {"id": str(2**70)}},
        log=lambda logger: logging.LoggerAdapter(logger, {"request": {"id": 2**70}}).info(
            "via adapter"
        ),
        paths=_HANDLER,
    ),
    # ``extra`` naming a LogRecord attribute: Logger.makeRecord raises KeyError in the app's
    # own call, before any handler exists for the record.  Stdlib behaviour, documented.
    Case(
        "extra_overwrites_record_attribute",
        Outcome.STDLIB_RAISES,
        {},
        log=lambda logger: logger.info("x", extra={"message": "mine"}),
        paths=_HANDLER,
        raises=KeyError,
    ),
    # -- over the size limit --------------------------------------------------------------------
    Case(
        "huge_message",
        Outcome.TRUNCATED,
        {
            "message": _cut_from(_BIG_TEXT),
            "metadata/truncated/cut": 1,
            "metadata/truncated/original_bytes": _number(MAX_PAYLOAD),
        },
        message=_BIG_TEXT,
    ),
    Case(
        "huge_multibyte_message", Outcome.TRUNCATED, {"message": _cut_from(_EMOJI)}, message=_EMOJI
    ),
    Case(
        "huge_metadata_string",
        Outcome.TRUNCATED,
        {"message": "bad input", "metadata/value": _cut_from(_BIG_TEXT)},
        fields=lambda: {"value": _BIG_TEXT},
    ),
    Case(
        "huge_message_and_string",
        Outcome.TRUNCATED,
        {
            "message": _cut_from(_BIG_TEXT),
            "metadata/value": _cut_from(_BIG_TEXT),
            "metadata/truncated/cut": 2,
            "metadata/small": "kept",
        },
        message=_BIG_TEXT,
        fields=lambda: {"value": _BIG_TEXT, "small": "kept"},
    ),
    Case(
        "huge_nested_string",
        Outcome.TRUNCATED,
        {"metadata/value/type": "Error", "metadata/value/stack": _cut_from(_BIG_TEXT)},
        fields=lambda: {"value": {"type": "Error", "stack": _BIG_TEXT}},
    ),
    Case(
        "huge_list",
        Outcome.TRUNCATED,
        {
            "metadata/value": ABSENT,
            "metadata/truncated/dropped_keys": ["value"],
            "metadata/kept": 1,
        },
        fields=lambda: {"value": list(range(_HUGE // 4)), "kept": 1},
    ),
    Case(
        "many_keys",
        Outcome.TRUNCATED,
        {"metadata/truncated/dropped": _number(0), "metadata/k00000": ABSENT},
        fields=lambda: {f"k{n:05d}": "x" * 20 for n in range(_HUGE // 30)},
    ),
    Case(
        "huge_invalid_utf8_bytes",
        Outcome.TRUNCATED,
        {"metadata/value": _startswith("\\xff\\xfe" * 8), "metadata/small": "kept"},
        fields=lambda: {"value": b"\xff\xfe" * (_TEN_MB // 2), "small": "kept"},
    ),
    Case(
        "huge_lone_surrogates",
        Outcome.REPAIRED_TRUNCATED,
        {"metadata/value": _startswith("\ufffdx" * 8), "metadata/small": "kept"},
        fields=lambda: {"value": "\udc80x" * (_TEN_MB // 2), "small": "kept"},
    ),
    Case(
        "huge_with_lone_surrogate",
        Outcome.REPAIRED_TRUNCATED,
        {"message": _cut_from("\ufffd" + _BIG_TEXT)},
        message="\udc80" + _BIG_TEXT,
    ),
)
