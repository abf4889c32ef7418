"""Configuration mistakes fail at configuration time with a message that names the option
(and the likely correction), before any Kafka client exists.  No broker needed."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logtide_kafka
from logtide_kafka import DEFAULT_REDACT_KEYS, REDACTED, KafkaHandler
from logtide_kafka.producer import _lifecycle
from logtide_kafka.structlog import KafkaProcessor


@pytest.fixture
def no_new_client() -> Iterator[None]:
    """The test's mistakes must raise before a producer is created."""
    before = dict(_lifecycle._registry)
    yield
    assert _lifecycle._registry == before


def _record(**extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"msg": "m %s", "args": ("x",), "levelno": 20, "levelname": "INFO", **extra}
    )


@pytest.mark.parametrize(
    ("option", "suggestion"),
    [
        ("feilds", "fields"),
        ("bootstrap_server", "bootstrap_servers"),
        ("logger_category", "logger_categories"),
        ("redact_extras", "redact_extra"),
        ("onfull", "on_full"),
        ("ignore_formater", "ignore_formatter"),
    ],
)
def test_a_misspelt_option_gets_did_you_mean(
    dead_bootstrap: str, no_new_client: None, option: str, suggestion: str
) -> None:
    with pytest.raises(TypeError, match=rf"'{option}' \(did you mean '{suggestion}'\?\)"):
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, **{option: {}})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"did you mean '{suggestion}'"):
        KafkaProcessor("svc", bootstrap_servers=dead_bootstrap, **{option: {}})  # type: ignore[arg-type]


def test_configure_names_the_typo_too(dead_bootstrap: str, no_new_client: None) -> None:
    with pytest.raises(TypeError, match=r"'feilds' \(did you mean 'fields'\?\)"):
        logtide_kafka.configure(dead_bootstrap, feilds={})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'exit_timout' \(did you mean 'exit_timeout'\?\)"):
        logtide_kafka.configure(dead_bootstrap, exit_timout=1)  # type: ignore[call-arg]


def test_an_option_far_from_any_name_is_named_without_a_guess(dead_bootstrap: str) -> None:
    with pytest.raises(TypeError) as info:
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, zzzzzz=1)  # type: ignore[call-arg]
    assert str(info.value) == "unexpected keyword argument(s): 'zzzzzz'"


def test_a_handler_argument_given_to_the_processor_is_not_its_own_correction(
    dead_bootstrap: str,
) -> None:
    with pytest.raises(TypeError) as info:
        KafkaProcessor("svc", bootstrap_servers=dead_bootstrap, ignore_formatter=True)  # type: ignore[call-arg]
    assert "did you mean 'ignore_formatter'" not in str(info.value)
    assert "'ignore_formatter'" in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fields": "env=prod"}, r"fields must be a mapping such as \{\"environment\""),
        ({"fields": ["env", "prod"]}, "fields must be a mapping .* not list"),
        ({"logger_categories": ["sqlalchemy"]}, "logger_categories must be a mapping"),
        ({"level_categories": "CRITICAL=security"}, "level_categories must be a mapping"),
        ({"logger_categories": {"db": 3}}, r"logger_categories\['db'\] must be a category"),
        ({"level_categories": {"ERROR": ["x"]}}, r"level_categories\['ERROR'\] must be"),
        ({"redact": 5}, "redact must be a list of metadata keys .* not int 5"),
        ({"redact": {"password": True}}, "redact must be a list of metadata keys"),
        ({"redact": ["password", 7]}, "redact must hold metadata keys"),
        ({"redact_extra": b"pin"}, "redact_extra must be a list"),
        ({"redact_extra": [None]}, "redact_extra must hold metadata keys"),
        ({"topic": 42}, "topic must be a topic name"),
        ({"trace_context": "false"}, "trace_context must be true or false, not 'false'"),
        ({"block_timeout": "0.5"}, "block_timeout must be a number of seconds"),
        ({"warn_interval": [1]}, "warn_interval must be a number of seconds"),
        ({"spool_max_bytes": 1.5}, "spool_max_bytes must be an int"),
    ],
)
def test_a_wrong_type_names_the_option(
    dead_bootstrap: str, no_new_client: None, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, **options)
    with pytest.raises(TypeError, match=message):
        KafkaProcessor("svc", bootstrap_servers=dead_bootstrap, **options)


def test_ignore_formatter_must_be_a_bool(dead_bootstrap: str, no_new_client: None) -> None:
    with pytest.raises(TypeError, match="ignore_formatter must be true or false"):
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, ignore_formatter="no")  # type: ignore[arg-type]


def test_dictconfig_reports_the_typo_with_its_correction(dead_bootstrap: str) -> None:
    config = {
        "version": 1,
        "handlers": {
            "kafka": {
                "class": "logtide_kafka.KafkaHandler",
                "service": "svc",
                "bootstrap_servers": dead_bootstrap,
                "feilds": {"env": "prod"},
            }
        },
    }
    with pytest.raises(ValueError, match="Unable to configure handler 'kafka'") as info:
        logging.config.dictConfig(config)
    # dictConfig names the entry and chains our TypeError, printed with the traceback.
    assert isinstance(info.value.__cause__, TypeError)
    assert "'feilds' (did you mean 'fields'?)" in str(info.value.__cause__)


def test_redact_extra_adds_to_the_default_keys(dead_bootstrap: str) -> None:
    handler = KafkaHandler(
        "svc", bootstrap_servers=dead_bootstrap, redact_extra=["card_number", "IBAN"]
    )
    metadata = handler.to_event(
        _record(password="hunter2", card_number="4242", iban="DE00", plain="ok")
    )["metadata"]
    assert metadata["password"] == REDACTED  # the defaults still apply
    assert metadata["card_number"] == REDACTED
    assert metadata["iban"] == REDACTED  # case-insensitive, as every redact key
    assert metadata["plain"] == "ok"


def test_redact_extra_accepts_one_key_and_any_iterable(dead_bootstrap: str) -> None:
    one = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redact_extra="pin")
    gen = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redact_extra=(k for k in ["pin"]))
    for handler in (one, gen):
        metadata = handler.to_event(_record(pin="1234", token="t", p="x"))["metadata"]
        assert (metadata["pin"], metadata["token"], metadata["p"]) == (REDACTED, REDACTED, "x")


def test_redact_replaces_the_defaults_and_redact_extra_adds_to_it(dead_bootstrap: str) -> None:
    replaced = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redact=["pin"])
    both = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redact=["pin"], redact_extra=["x"])
    record = _record(pin="1", x="2", password="3")
    assert replaced.to_event(record)["metadata"] == {
        **replaced.to_event(record)["metadata"],
        "pin": REDACTED,
        "x": "2",
        "password": "3",  # documented: redact= replaces the default list
    }
    metadata = both.to_event(_record(pin="1", x="2", password="3"))["metadata"]
    assert (metadata["pin"], metadata["x"], metadata["password"]) == (REDACTED, REDACTED, "3")
    assert "password" in DEFAULT_REDACT_KEYS


def test_processor_takes_redact_extra(dead_bootstrap: str) -> None:
    processor = KafkaProcessor("svc", bootstrap_servers=dead_bootstrap, redact_extra=["pin"])
    event = processor.to_event(None, "info", {"event": "e", "pin": "1", "password": "2"})
    assert event is not None
    assert event["metadata"]["pin"] == event["metadata"]["password"] == REDACTED


# -- an inherited formatter ------------------------------------------------------------


def _basicconfig_formatter() -> logging.Formatter:
    """The formatter ``logging.basicConfig(handlers=[...])`` gives a handler."""
    return logging.Formatter(logging.BASIC_FORMAT)


def test_a_formatter_shapes_the_message_by_default(dead_bootstrap: str) -> None:
    handler = KafkaHandler("svc", bootstrap_servers=dead_bootstrap)
    handler.setFormatter(_basicconfig_formatter())
    assert handler.to_event(_record(name="shop"))["message"] == "INFO:shop:m x"


def test_ignore_formatter_keeps_the_plain_message(dead_bootstrap: str) -> None:
    handler = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, ignore_formatter=True)
    handler.setFormatter(_basicconfig_formatter())
    assert handler.to_event(_record(name="shop"))["message"] == "m x"
    try:
        raise KeyError("sku-9")
    except KeyError:
        record = logging.getLogger("shop").makeRecord(
            "shop", logging.ERROR, __file__, 1, "failed %s", ("c-1",), sys.exc_info()
        )
    event = handler.to_event(record)
    assert event["message"] == "failed c-1"  # no traceback appended to the message
    assert event["metadata"]["exception"]["type"] == "KeyError"
    assert "Traceback" in event["metadata"]["exception"]["stack"]


def test_ignore_formatter_from_an_ini_file(tmp_path: Path, dead_bootstrap: str) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [loggers]
            keys=root

            [handlers]
            keys=kafka

            [formatters]
            keys=plain

            [logger_root]
            level=INFO
            handlers=kafka

            [handler_kafka]
            class=logtide_kafka.KafkaHandler
            formatter=plain
            args=("svc",)
            kwargs={{"bootstrap_servers": "{dead_bootstrap}", "ignore_formatter": True,
                    "redact_extra": ["pin"]}}

            [formatter_plain]
            format=%(asctime)s %(levelname)s %(message)s
            """
        )
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.fileConfig(ini, disable_existing_loggers=False)
        (handler,) = root.handlers
        assert isinstance(handler, KafkaHandler)
        assert handler.formatter is not None  # the INI's formatter is set ...
        event = handler.to_event(_record(pin="1"))
        assert event["message"] == "m x"  # ... and ignored
        assert event["metadata"]["pin"] == REDACTED
        handler.close()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_ini_typo_reaches_the_user(tmp_path: Path, dead_bootstrap: str) -> None:
    ini = io.StringIO(
        textwrap.dedent(
            f"""\
            [loggers]
            keys=root
            [handlers]
            keys=kafka
            [formatters]
            keys=
            [logger_root]
            handlers=kafka
            [handler_kafka]
            class=logtide_kafka.KafkaHandler
            args=("svc",)
            kwargs={{"bootstrap_servers": "{dead_bootstrap}", "exta_fields": {{}}}}
            """
        )
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with pytest.raises(TypeError, match="'exta_fields'"):
            logging.config.fileConfig(ini, disable_existing_loggers=False)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
