"""librdkafka settings from the command line: the properties file, ``-X``, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from logtide_kafka._clientconfig import (
    MASK,
    ClientConfig,
    ConfigError,
    is_secret,
    load_client_config,
    parse_setting,
    read_properties,
)

SECRET = "s3cr3t-Qx7-never-shown"


def _write(tmp_path: Path, text: str | bytes, name: str = "client.properties") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_properties_file_reads_as_java_does(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "# a comment\n"
        "! another comment\n"
        "\n"
        "security.protocol=SASL_SSL\n"
        "  sasl.mechanism : SCRAM-SHA-512\n"  # `:` with spaces around it
        "sasl.username alice\n"  # a space separates too
        "sasl.password=pa=ss:word\n"  # only the first separator counts
        "ssl.ca.location=/etc/ssl/\\\n"  # a continuation line
        "    ca.pem\n"
        "client.id=caf\\u00e9\\tx\n"  # \uXXXX and \t escapes
        "a\\=b=c\n"  # an escaped separator belongs to the key
        "empty=\n"  # an explicit empty value
        "client.id=again\r\n"  # the last one wins; CRLF line ends
        "trailing=kept \n"
        "\fformfeed=\fa\u2028b\x1cc\rold.mac=line end\n",  # only \r, \n, \r\n end lines
    )
    assert read_properties(path) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "pa=ss:word",
        "ssl.ca.location": "/etc/ssl/ca.pem",
        "client.id": "again",
        "a=b": "c",
        "empty": "",
        "trailing": "kept ",  # java.util.Properties keeps trailing blanks
        "formfeed": "a\u2028b\x1cc",
        "old.mac": "line end",
    }


def test_a_comment_is_only_a_comment_at_the_start_of_a_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "sasl.username=bob # not a comment\n   # indented comment\n")
    assert read_properties(path) == {"sasl.username": "bob # not a comment"}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "security.protocol=SSL\nssl.ca.location\n",
            2,
            "a key without a value (expected key=value)",
        ),
        ("# c\n\n=value\n", 3, "a setting without a key (expected key=value)"),
        ("a=1\nclient.id=\\u12\n", 2, "malformed \\uXXXX escape"),
        (b"a=1\nb=2\nc=\xff\n", 3, "not UTF-8 text"),
    ],
)
def test_a_bad_line_names_the_file_and_the_line(
    tmp_path: Path, text: str | bytes, line: int, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_properties(path)
    assert str(info.value) == f"{path}, line {line}: {reason}"


def test_errors_never_show_a_secret(tmp_path: Path) -> None:
    # A password pasted on a line of its own looks like a key without a value.
    path = _write(tmp_path, f"sasl.username=alice\n{SECRET}\n")
    with pytest.raises(ConfigError) as info:
        read_properties(path)
    assert str(info.value) == f"{path}, line 2: a key without a value (expected key=value)"
    with pytest.raises(ConfigError) as info:
        read_properties(_write(tmp_path, f"a=1\nsasl.password=\\u{SECRET}\n"))
    assert "line 2: malformed" in str(info.value)
    assert SECRET not in str(info.value)

    with pytest.raises(ConfigError) as info:
        parse_setting("sasl.password")
    assert str(info.value) == f"expected KEY=VALUE, not {MASK}"
    with pytest.raises(ConfigError) as info:
        parse_setting(f"={SECRET}")
    assert SECRET not in str(info.value)
    assert "the key is empty" in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    with pytest.raises(ConfigError, match=f"cannot read {missing}: No such file"):
        read_properties(missing)


def test_dash_x_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "session.timeout.ms=45000\nclient.id=from-file\n")
    assert parse_setting("session.timeout.ms=10000") == ("session.timeout.ms", "10000")
    assert parse_setting(" debug = a=b") == ("debug", " a=b")  # the value is taken as is
    config = load_client_config(
        path, [parse_setting("session.timeout.ms=10000"), parse_setting("acks=all")]
    )
    assert dict(config) == {
        "session.timeout.ms": "10000",
        "client.id": "from-file",
        "acks": "all",
    }
    assert dict(load_client_config()) == {}


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "ssl.key.pem",
        "ssl_key",
        "sasl.jaas.config",  # a Java client's line, password inside
        "sasl.pasword",  # misspelt, still a password
    ],
)
def test_secret_keys_are_masked(key: str) -> None:
    assert is_secret(key)
    config = ClientConfig({key: SECRET, "security.protocol": "SASL_SSL"})
    assert SECRET not in repr(config)
    assert config.masked() == {key: MASK, "security.protocol": "SASL_SSL"}
    assert config.secrets() == [SECRET]
    assert config[key] == SECRET  # the clients still get the real value


@pytest.mark.parametrize(
    "key",
    [
        "bootstrap.servers",
        "security.protocol",
        "sasl.username",
        "sasl.mechanism",
        "ssl.ca.location",
        "ssl.key.location",
        "session.timeout.ms",
    ],
)
def test_ordinary_keys_are_shown(key: str) -> None:
    assert not is_secret(key)
    assert ClientConfig({key: "shown"}).masked() == {key: "shown"}


@pytest.mark.parametrize("key", ["error_cb", "stats_cb", "logger", "on_delivery"])
def test_python_only_settings_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: confluent-kafka takes a Python object"):
        load_client_config(overrides=[(key, "print")])
    path = _write(tmp_path, f"{key}=print\n")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_client_config(path)
