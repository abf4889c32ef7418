"""``logtide-kafka``: topic bootstrap, the shipper, lag and health, and test tools.

Subcommands: ``topics apply``, ``ship``, ``lag``, ``send``, ``tail``.  Expected failures
(an unreachable broker, a missing file or topic, a missing setting) print one line on
stderr and exit 2, without a traceback.  Every command logs the ``logtide_kafka`` loggers
to stderr (``--log-level``, ``--log-format``) and takes librdkafka settings
(``--command-config FILE``, ``-X key=value``).  Neither the LogTide API key nor a secret
client setting is ever printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, NoReturn

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

import logtide_kafka
from logtide_kafka._client_log import CLIENT_LOGGER
from logtide_kafka._clientconfig import ClientConfig, ConfigError, load_client_config, parse_setting
from logtide_kafka._clilog import LOG_FORMATS, LOG_LEVELS, cli_logging, scrubber
from logtide_kafka._contract import LEVELS
from logtide_kafka._event import normalize_level
from logtide_kafka._exitcodes import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from logtide_kafka._redact import REDACTED
from logtide_kafka._routing import DEFAULT_TOPIC, TOPICS
from logtide_kafka.pipeline._metrics import DEFAULT_METRICS_HOST
from logtide_kafka.pipeline.lag import (
    DEFAULT_GROUP,
    LagError,
    measure,
    render_json,
    render_prometheus,
    render_table,
)
from logtide_kafka.pipeline.topics import (
    DEFAULT_LAYOUT,
    DLQ_TOPIC,
    LayoutError,
    TopicsError,
    admin_client,
    apply,
    load_layout,
)
from logtide_kafka.pipeline.topics import plan as make_plan
from logtide_kafka.producer import DEFAULT_BOOTSTRAP

__all__ = ["build_parser", "main"]

PROG: Final = "logtide-kafka"
LEVEL_ORDER: Final = LEVELS
_COLORS: Final = {"debug": "2", "info": "32", "warn": "33", "error": "31", "critical": "1;31"}
_MAX_VALUE: Final = 80


class CliError(Exception):
    """An expected failure: reported as one line on stderr, exit code 2."""


# -- shared helpers ---------------------------------------------------------------------------


def _brokers(args: argparse.Namespace) -> str:
    client: ClientConfig = args.client
    return str(
        args.brokers
        or client.get("bootstrap.servers")
        or os.environ.get("KAFKA_BROKERS")
        or DEFAULT_BOOTSTRAP
    )


def _settings(args: argparse.Namespace) -> dict[str, str]:
    """The ``--command-config`` and ``-X`` settings, minus the address (see :func:`_brokers`)."""
    client: ClientConfig = args.client
    return client.without("bootstrap.servers")


def _admin(args: argparse.Namespace) -> AdminClient:
    errors: list[str] = args.client_errors

    def on_error(error: KafkaError) -> None:
        # "all brokers down" says less than the error before it (authentication, TLS).
        if error.code() != KafkaError._ALL_BROKERS_DOWN:
            errors.append(error.str())

    return admin_client(_brokers(args), **_settings(args), error_cb=on_error)


def _metadata(args: argparse.Namespace, admin: Any, topic: str | None = None) -> Any:
    """Cluster metadata, or a CliError naming the brokers that could not be reached and,
    when the client said, why (a refused password, an untrusted certificate)."""
    try:
        return admin.list_topics(topic, timeout=args.timeout)
    except KafkaException as exc:
        admin.poll(0)  # serves the client's error reports (and its log lines)
        errors: list[str] = args.client_errors
        why = f" ({errors[-1]})" if errors else ""
        raise CliError(f"cannot reach Kafka at {_brokers(args)}: {_kafka_text(exc)}{why}") from exc


def _kafka_text(exc: KafkaException) -> str:
    error: Any = exc.args[0] if exc.args else None
    return str(error.str()) if hasattr(error, "str") else str(exc)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def _level(text: str) -> str:
    name, known = normalize_level(text)
    if not known:
        raise argparse.ArgumentTypeError(f"unknown level {text!r} (use {', '.join(LEVEL_ORDER)})")
    return name


def _setting(text: str) -> tuple[str, str]:
    try:
        return parse_setting(text)
    except ConfigError as exc:  # argparse would echo the argument, value included
        raise argparse.ArgumentTypeError(str(exc)) from None


def _field(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(raw)  # numbers, booleans, JSON objects
    except ValueError:
        return key, raw


# -- topics apply -------------------------------------------------------------------------------


def _cmd_topics_apply(args: argparse.Namespace) -> int:
    try:
        layout = load_layout(args.file) if args.file else DEFAULT_LAYOUT
    except OSError as exc:
        raise CliError(f"cannot read layout {args.file}: {exc.strerror or exc}") from exc
    except LayoutError as exc:
        raise CliError(f"invalid layout: {exc}") from exc
    admin = _admin(args)
    _metadata(args, admin)  # a clear message when the cluster is unreachable
    try:
        plan = make_plan(admin, layout, cap_replication=args.cap_replication, timeout=args.timeout)
    except TopicsError as exc:
        raise CliError(str(exc)) from exc
    source = args.file or "the default layout"
    print(f"{_brokers(args)} ({plan.brokers} broker(s)), {source}:")
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for name in plan.unchanged:
        print(f"  ok {name}")
    if args.dry_run:
        for change in plan.changes:
            print(f"  would {change}")
        print(f"dry run: {len(plan.changes)} change(s) planned, nothing changed")
        return EXIT_OK
    try:
        applied = apply(admin, plan, timeout=max(args.timeout, 30.0))
    except TopicsError as exc:
        for change in exc.applied:
            print(f"  {change}")
        raise CliError(str(exc)) from exc
    for change in applied:
        print(f"  {change}")
    print(f"applied {len(applied)} change(s)" if applied else "no changes: the cluster matches")
    return EXIT_OK


def _add_topics_arguments(commands: Any, common: argparse.ArgumentParser) -> None:
    """``topics`` and its one action, ``apply``."""
    topics = commands.add_parser(
        "topics", help="manage the logs.* topic layout", description="Manage the topic layout."
    )
    topic_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    apply = topic_commands.add_parser(
        "apply",
        parents=[common],
        help="create missing topics, fix drifted configs, add partitions",
        description="Create missing topics, set configs that differ and add partitions, so "
        "the cluster matches the layout. Never deletes anything; a replication factor "
        "that differs is reported, not changed.",
    )
    apply.set_defaults(run=_cmd_topics_apply)
    apply.add_argument("--file", metavar="LAYOUT.toml", help="layout file (default: built in)")
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument(
        "--cap-replication",
        action="store_true",
        help="cap replication factors at the number of brokers (development clusters)",
    )


# -- ship -----------------------------------------------------------------------------------------


def _cmd_ship(args: argparse.Namespace) -> int:
    api_url = args.api_url or os.environ.get("LOGTIDE_API_URL")
    api_key = args.api_key or os.environ.get("LOGTIDE_API_KEY")
    if not api_url:
        raise CliError("no LogTide API URL: set LOGTIDE_API_URL or pass --api-url")
    if not api_url.startswith(("http://", "https://")):
        shown = api_url.replace(api_key, REDACTED) if api_key else api_url
        raise CliError(f"the LogTide API URL must start with http:// or https://: {shown}")
    if not api_key:
        raise CliError("no LogTide API key: set LOGTIDE_API_KEY (or pass --api-key)")
    try:
        # Lazily: the shipper needs the [ship] extra, no other command does.
        from logtide_kafka.pipeline.shipper import (  # noqa: PLC0415
            ShipperConfig,
            _freeze_start_up_heap,
            run_shipper,
        )
    except ImportError as exc:
        raise CliError(
            f"the shipper is not available ({exc}); install 'logtide-kafka[ship]'"
        ) from exc
    options: dict[str, Any] = {
        "group": args.group,
        "topics": tuple(args.topic) if args.topic else None,
        "dlq_topic": args.dlq_topic,
        "batch_max_events": args.batch_max_events,
        "batch_max_bytes": args.batch_max_bytes,
        "batch_max_wait": args.batch_max_wait,
        "request_timeout": args.request_timeout,
        "max_backoff": args.max_backoff,
        "concurrency": args.concurrency,
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
    }
    try:
        config = ShipperConfig(
            brokers=_brokers(args),
            api_url=api_url,
            api_key=api_key,
            consumer_config=_settings(args),
            **{key: value for key, value in options.items() if value is not None},
        )
        _freeze_start_up_heap()  # this process only ships
        return int(run_shipper(config))
    except (ValueError, OSError, KafkaException) as exc:
        # Whatever the shipper put in the message, the key stays out of the output.
        raise CliError(str(exc).replace(api_key, REDACTED)) from exc


def _add_ship_arguments(ship: argparse.ArgumentParser) -> None:
    ship.add_argument("--api-url", help="LogTide base URL (default: $LOGTIDE_API_URL)")
    ship.add_argument(
        "--api-key",
        help="LogTide API key (default: $LOGTIDE_API_KEY; prefer the variable, since "
        "command lines are visible to other users)",
    )
    ship.add_argument("--group", help=f"consumer group (default: {DEFAULT_GROUP})")
    ship.add_argument(
        "--topic", action="append", help="topic to consume, '^regex' allowed (repeatable)"
    )
    ship.add_argument("--dlq-topic", help=f"dead-letter topic (default: {DLQ_TOPIC})")
    ship.add_argument("--batch-max-events", type=_count, metavar="N")
    ship.add_argument("--batch-max-bytes", type=_count, metavar="BYTES")
    ship.add_argument("--batch-max-wait", type=_positive, metavar="SECONDS")
    ship.add_argument("--request-timeout", type=_positive, metavar="SECONDS")
    ship.add_argument("--max-backoff", type=_positive, metavar="SECONDS")
    ship.add_argument(
        "--concurrency", type=_count, metavar="N", help="batches posted to LogTide at once"
    )
    ship.add_argument("--metrics-port", type=int, metavar="PORT", help="serve metrics here")
    ship.add_argument(
        "--metrics-host",
        metavar="ADDRESS",
        help=f"the address the metrics endpoint listens on (default: {DEFAULT_METRICS_HOST}, "
        "every interface; 127.0.0.1 keeps it local)",
    )


# -- lag ------------------------------------------------------------------------------------------


def _cmd_lag(args: argparse.Namespace) -> int:
    admin = _admin(args)
    _metadata(args, admin)
    try:
        report = measure(
            admin,
            args.group or [DEFAULT_GROUP],
            topics=args.topic or (),
            window=args.window,
            metrics_url=args.metrics_url,
            timeout=args.timeout,
        )
    except LagError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(render_json(report))
    elif args.prometheus:
        sys.stdout.write(render_prometheus(report))
    else:
        print(render_table(report))
    return report.exit_code


def _add_lag_arguments(lag: argparse.ArgumentParser) -> None:
    lag.add_argument(
        "--group", action="append", help=f"consumer group (repeatable; default: {DEFAULT_GROUP})"
    )
    lag.add_argument(
        "--topic", action="append", help="measure every partition of this topic (repeatable)"
    )
    lag.add_argument(
        "--window",
        type=_non_negative,
        default=10.0,
        metavar="SECONDS",
        help="seconds between the two samples for throughput; 0 skips it (default: 10)",
    )
    lag.add_argument(
        "--metrics-url",
        metavar="URL",
        help="the shipper's metrics JSON, for its error rate (e.g. http://host:9464/metrics.json)",
    )
    output = lag.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--prometheus", action="store_true", help="print Prometheus text format")


# -- send -----------------------------------------------------------------------------------------


def _cmd_send(args: argparse.Namespace) -> int:
    brokers = _brokers(args)
    topic_meta = _metadata(args, _admin(args), args.topic).topics.get(args.topic)
    if topic_meta is None or topic_meta.error is not None:
        raise CliError(
            f"topic {args.topic!r} does not exist on {brokers} "
            "(create it with `logtide-kafka topics apply`)"
        )
    logtide_kafka.configure(
        brokers,
        topic=args.topic,
        producer_config={"message.timeout.ms": int(args.timeout * 1000), **_settings(args)},
        exit_timeout=1.0,
    )
    started = time.monotonic()
    enqueued = logtide_kafka.send_log(args.level, args.message, args.service, **dict(args.field))
    remaining = logtide_kafka.flush(args.timeout + 2)
    stats = logtide_kafka.stats()
    logtide_kafka.close_all(1.0)
    where = f"{args.topic} (service {args.service}, level {args.level})"
    if enqueued and remaining == 0 and stats.failed == 0 and stats.delivered == 1:
        print(f"delivered 1 event to {where} in {time.monotonic() - started:.2f} s")
        return EXIT_OK
    reason = stats.last_error or (f"{remaining} still queued" if remaining else "dropped")
    print(
        f"{PROG} send: not delivered to {where}: delivered={stats.delivered} "
        f"failed={stats.failed} dropped={stats.dropped}: {reason}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _add_send_arguments(send: argparse.ArgumentParser) -> None:
    send.add_argument("--topic", default=DEFAULT_TOPIC, help=f"(default: {DEFAULT_TOPIC})")
    send.add_argument("--service", default="logtide-kafka-cli", help="(default: logtide-kafka-cli)")
    send.add_argument("--level", type=_level, default="info", help="(default: info)")
    send.add_argument("--message", default="logtide-kafka test event")
    send.add_argument(
        "--field",
        type=_field,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a metadata field; VALUE is parsed as JSON when it can be (repeatable)",
    )


# -- tail -----------------------------------------------------------------------------------------


def _resolve_topics(args: argparse.Namespace, metadata: Any) -> list[str]:
    """Named topics must exist; ``^regex`` ones select among those that do."""
    existing = sorted(t for t, m in metadata.topics.items() if m.error is None)
    wanted = args.topic or list(TOPICS)
    found: list[str] = []
    missing: list[str] = []
    for name in wanted:
        if name.startswith("^"):
            try:
                pattern = re.compile(name)
            except re.error as exc:
                raise CliError(f"bad topic pattern {name!r}: {exc}") from exc
            found += [t for t in existing if pattern.match(t) and not t.startswith("__")]
        elif name in existing:
            found.append(name)
        else:
            missing.append(name)
    if missing:
        raise CliError(f"no such topic on {_brokers(args)}: {', '.join(missing)}")
    if not found:
        raise CliError(f"no topic matches {', '.join(wanted)}")
    return list(dict.fromkeys(found))


def _messages(consumer: Consumer) -> Iterator[Any]:
    while True:
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is None:
            yield message
        elif error.fatal():
            raise CliError(f"consuming failed: {error.str()}")
        else:  # transient (a broker restarting): say so and keep following
            print(f"{PROG} tail: warning: {error.str()}", file=sys.stderr)


def _compact(value: Any) -> str:
    if isinstance(value, dict) and {"type", "message"} <= value.keys():
        text = f"{value['type']}: {value['message']}"  # an exception: its stack is for --json
    elif isinstance(value, str):
        text = value if value and not any(c.isspace() or c in '"=' for c in value) else ""
        text = text or json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    text = " ".join(text.split())  # one line per event, whatever the value holds
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _format_event(event: dict[str, Any], *, color: bool = False) -> str:
    """One readable line: time, level, service, message, then ``key=value`` metadata."""
    level = str(event.get("level", "?"))
    shown = f"{level.upper():<8}"
    if color and level in _COLORS:
        shown = f"\x1b[{_COLORS[level]}m{shown}\x1b[0m"
    message = " ".join(str(event.get("message", "")).split())
    parts = [str(event.get("time", "-")), shown, f"{event.get('service', '-')}:", message]
    metadata = event.get("metadata")
    extra: dict[str, Any] = dict(metadata) if isinstance(metadata, dict) else {}
    for key in ("trace_id", "span_id"):
        if key in event:
            extra[key] = event[key]
    parts += [f"{key}={_compact(value)}" for key, value in extra.items()]
    return " ".join(parts)


def _cmd_tail(args: argparse.Namespace) -> int:
    metadata = _metadata(args, _admin(args))
    topics = _resolve_topics(args, metadata)
    settings = _settings(args)
    consumer = Consumer(
        {
            **settings,
            "bootstrap.servers": _brokers(args),
            # Partitions are assigned, not subscribed: no group joins, nothing is committed.
            "group.id": settings.get("group.id") or f"logtide-kafka-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "logger": logging.getLogger(CLIENT_LOGGER),
        }
    )
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    consumer.assign(
        [TopicPartition(t, p, start) for t in topics for p in metadata.topics[t].partitions]
    )
    minimum = LEVEL_ORDER.index(args.level) if args.level else 0
    services = set(args.service or ())
    color = not args.json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    shown = 0
    try:
        for message in _messages(consumer):
            raw: bytes = message.value() or b""
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                if services or args.level:
                    continue  # cannot match a filter
                where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                line = raw.decode("utf-8", "replace") if args.json else f"{where}: not an event"
            else:
                level = event.get("level")
                rank = LEVEL_ORDER.index(level) if level in LEVEL_ORDER else 0
                if (services and event.get("service") not in services) or rank < minimum:
                    continue
                line = (
                    raw.decode("utf-8", "replace")
                    if args.json
                    else _format_event(event, color=color)
                )
            print(line, flush=True)
            shown += 1
            if args.max is not None and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends
    finally:
        consumer.close()
    return EXIT_OK


def _add_tail_arguments(tail: argparse.ArgumentParser) -> None:
    tail.add_argument(
        "--topic",
        action="append",
        help="topic, or '^regex' (repeatable; default: " + ", ".join(TOPICS) + ")",
    )
    tail.add_argument("--service", action="append", help="only this service (repeatable)")
    tail.add_argument("--level", type=_level, help="only this level and above")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    tail.add_argument("--max", type=_count, metavar="N", help="stop after N events")
    tail.add_argument("--json", action="store_true", help="print each event's raw JSON")


# -- the parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line of reason (after the usage), like every error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CANNOT_RUN, f"{self.prog}: error: {message}\n")


def _connection_options() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--brokers",
        metavar="HOST:PORT[,...]",
        help=f"bootstrap servers (default: $KAFKA_BROKERS, else {DEFAULT_BOOTSTRAP})",
    )
    common.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the cluster (default: 10)",
    )
    client = common.add_argument_group(
        "client settings", "librdkafka settings (security and more), as Kafka's tools and kcat"
    )
    client.add_argument(
        "--command-config",
        metavar="FILE",
        help="a Java-properties file of librdkafka settings (key=value lines)",
    )
    client.add_argument(
        "-X",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting, over those of --command-config (repeatable)",
    )
    logs = common.add_argument_group("logging", "log lines go to stderr")
    logs.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="info",
        help="the lowest level shown (default: info)",
    )
    logs.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object per line (default: text)",
    )
    return common


#: Every command but ``topics``: name, what runs it, its help line, its own arguments.
_COMMANDS: Final[
    tuple[
        tuple[
            str,
            Callable[[argparse.Namespace], int],
            str,
            Callable[[argparse.ArgumentParser], None],
        ],
        ...,
    ]
] = (
    (
        "ship",
        _cmd_ship,
        "consume the log topics and post the events to LogTide",
        _add_ship_arguments,
    ),
    ("lag", _cmd_lag, "consumer-group lag and pipeline health", _add_lag_arguments),
    ("send", _cmd_send, "send one test event and wait for its delivery", _add_send_arguments),
    ("tail", _cmd_tail, "follow events, one readable line each", _add_tail_arguments),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``logtide-kafka`` argument parser (each subcommand sets ``run``)."""
    common = _connection_options()
    parser = _Parser(prog=PROG, description="Kafka tooling for the LogTide log pipeline.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_topics_arguments(commands, common)
    for name, run, help_text, add_arguments in _COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(run=run)
        add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``logtide-kafka``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join(part for part in (args.command, getattr(args, "topics_command", None)) if part)
    try:
        args.client = load_client_config(args.command_config, args.settings)
        args.client_errors = []
    except ConfigError as exc:
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    secrets = [*args.client.secrets(), *_api_keys(args)]
    scrub = scrubber(secrets)
    run: Callable[[argparse.Namespace], int] = args.run
    with cli_logging(args.log_level, args.log_format, secrets):
        try:
            return run(args)
        except CliError as exc:
            error = str(exc)
        except KafkaException as exc:
            error = _kafka_error(args, exc)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # output piped into `head`: stop quietly, like other tools
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
    print(f"{PROG} {name}: error: {scrub(error)}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def _api_keys(args: argparse.Namespace) -> list[str]:
    """The LogTide API key a command may hold, to keep it out of every line."""
    return [
        key for key in (getattr(args, "api_key", None), os.environ.get("LOGTIDE_API_KEY")) if key
    ]


def _kafka_error(args: argparse.Namespace, exc: KafkaException) -> str:
    error: Any = exc.args[0] if exc.args else None
    if hasattr(error, "code") and error.code() == KafkaError._INVALID_ARG:
        return f"invalid client setting: {_kafka_text(exc)}"  # from --command-config or -X
    return f"Kafka at {_brokers(args)}: {_kafka_text(exc)}"


if __name__ == "__main__":
    sys.exit(main())
