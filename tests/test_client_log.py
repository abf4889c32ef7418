"""The one rule for "is this logger the library's own", which the stdlib handler, the
structlog processor and the CLI share.  No broker needed."""

from __future__ import annotations

import logging

import pytest

from logtide_kafka._client_log import CLIENT_LOGGER, LIBRARY_LOGGER, handled, in_logger_tree


class _Name(str):
    pass


class _BrokenProxy:
    """Like Django's SimpleLazyObject whose loader fails: reading ``__class__`` raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("loader failed")


@pytest.mark.parametrize(
    ("name", "root", "expected"),
    [
        ("logtide_kafka", LIBRARY_LOGGER, True),
        ("logtide_kafka.client", LIBRARY_LOGGER, True),
        ("logtide_kafka.client.deep", CLIENT_LOGGER, True),
        (_Name("logtide_kafka.anything"), LIBRARY_LOGGER, True),
        ("logtide_kafka_app", LIBRARY_LOGGER, False),  # only a prefix: a user's logger
        ("logtide_kafkax.client", LIBRARY_LOGGER, False),
        ("logtide_kafka.shipper", CLIENT_LOGGER, False),
        ("app.logtide_kafka", LIBRARY_LOGGER, False),
        ("", LIBRARY_LOGGER, False),
        (None, LIBRARY_LOGGER, False),
        (42, LIBRARY_LOGGER, False),
        (b"logtide_kafka", LIBRARY_LOGGER, False),
    ],
)
def test_a_logger_and_its_descendants_only(name: object, root: str, expected: bool) -> None:
    assert in_logger_tree(name, root) is expected


def test_a_name_whose_class_cannot_be_read_is_not_ours() -> None:
    assert in_logger_tree(_BrokenProxy(), LIBRARY_LOGGER) is False


def test_the_client_logger_is_under_the_library_logger() -> None:
    assert in_logger_tree(CLIENT_LOGGER, LIBRARY_LOGGER)


def test_a_disabled_logger_is_not_handled() -> None:
    # dictConfig's disable_existing_loggers: a handler on the root does not show its records.
    logger = logging.getLogger("logtide_kafka.test-disabled")
    root = logging.getLogger()
    shown = logging.StreamHandler()
    root.addHandler(shown)
    try:
        assert handled(logger)
        logger.disabled = True
        assert not handled(logger)
    finally:
        root.removeHandler(shown)
        logger.disabled = False
