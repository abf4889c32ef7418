"""TLS and SASL listeners for :class:`~logtide_kafka.testing.LocalKafka`.

A throwaway certificate authority and the broker's keystore are generated with ``openssl``
when the cluster starts; SCRAM users are written into the metadata log when the storage is
formatted (``kafka-storage format --add-scram``), PLAIN users into the listener's JAAS
configuration.  Everything here is for tests: the keys are unencrypted on disk next to the
broker's data, and the passwords are in its ``server.properties``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

__all__ = [
    "Listener",
    "Mechanism",
    "SecurityConfig",
    "TlsFiles",
    "add_secure_listeners",
    "client_settings",
    "make_tls_files",
    "scram_format_args",
]

#: A secured listener LocalKafka can open next to PLAINTEXT.  ``MTLS`` is TLS with client
#: certificates required (``ssl.client.auth=required``); the others are named after their
#: ``security.protocol``.
Listener = Literal["SSL", "MTLS", "SASL_SSL", "SASL_PLAINTEXT"]
#: The SASL mechanisms every SASL listener accepts, each for every configured user.
Mechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]

LISTENERS: Final[tuple[Listener, ...]] = get_args(Listener)
MECHANISMS: Final[tuple[Mechanism, ...]] = get_args(Mechanism)
_PROTOCOL: Final[Mapping[Listener, str]] = {
    "SSL": "SSL",
    "MTLS": "SSL",
    "SASL_SSL": "SASL_SSL",
    "SASL_PLAINTEXT": "SASL_PLAINTEXT",
}
_JAAS_MODULE: Final[Mapping[Mechanism, str]] = {
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
# Names and passwords go unquoted into `--add-scram name=..,password=..` and quoted into a
# JAAS line, so neither may hold separators or quotes.
_SAFE: Final = re.compile(r"[A-Za-z0-9._~+-]{1,128}")
_OPENSSL_CONFIG: Final = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = logtide-kafka
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""
_DAYS: Final = "30"


def _default_users() -> dict[str, str]:
    return {"logtide": secrets.token_urlsafe(18)}


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Which secured listeners a :class:`LocalKafka` opens, and its SASL users.

    PLAINTEXT stays open on :attr:`LocalKafka.bootstrap_servers` for the brokers' own
    traffic, the admin client and :func:`read_events`; secured listeners are extra.
    """

    listeners: tuple[Listener, ...] = ("SSL", "SASL_SSL")
    #: SASL user name -> password, valid for every mechanism.  Default: one user,
    #: ``logtide``, with a random password.  Left out of ``repr()``.
    users: Mapping[str, str] = field(default_factory=_default_users, repr=False)

    def __post_init__(self) -> None:
        if not self.listeners:
            raise ValueError("SecurityConfig needs at least one listener")
        unknown = [name for name in self.listeners if name not in LISTENERS]
        if unknown or len(set(self.listeners)) != len(self.listeners):
            raise ValueError(f"listeners must be distinct names out of {LISTENERS}")
        if not self.users:
            raise ValueError("SecurityConfig needs at least one SASL user")
        for name, password in self.users.items():
            if not _SAFE.fullmatch(name):
                raise ValueError(f"user name {name!r}: use 1-128 of A-Z a-z 0-9 . _ ~ + -")
            if not _SAFE.fullmatch(password):  # never echo the password itself
                raise ValueError(f"password of user {name!r}: use 1-128 of A-Z a-z 0-9 . _ ~ + -")

    @property
    def sasl(self) -> bool:
        """Whether any listener authenticates with SASL."""
        return any(name.startswith("SASL") for name in self.listeners)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The certificates and keys generated for one cluster (paths in its workdir)."""

    #: PEM certificate of the throwaway CA: the clients' ``ssl.ca.location``.
    ca_location: Path
    #: The broker's PKCS12 keystore (key and certificate for ``localhost``/``127.0.0.1``).
    keystore: Path
    #: A client certificate (PEM) signed by the CA, for the ``MTLS`` listener.
    client_certificate: Path
    #: That certificate's private key (PEM, PKCS#8, encrypted with ``client_key_password``).
    client_key: Path
    keystore_password: str = field(repr=False)
    client_key_password: str = field(repr=False)


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate a CA, a broker keystore and a client certificate under ``directory``.

    EC P-256 keys keep it to a fraction of a second.  Passwords travel to ``openssl`` in
    its environment, not on its command line (which ``ps`` shows).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_location=directory / "ca.pem",
        keystore=directory / "broker.p12",
        client_certificate=directory / "client.pem",
        client_key=directory / "client.key",
        keystore_password=secrets.token_hex(16),
        client_key_password=secrets.token_hex(16),
    )
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    env = {
        **os.environ,
        "LOGTIDE_STORE_PASS": files.keystore_password,
        "LOGTIDE_KEY_PASS": files.client_key_password,
    }
    paths = {
        "cnf": directory / "openssl.cnf",
        "ca": files.ca_location,
        "ca_key": directory / "ca.key",
        "p12": files.keystore,
        "client_key": files.client_key,
    }
    for name in ("broker", "client"):
        for ext in ("raw.key", "csr", "pem"):
            paths[f"{name}_{ext.split('.')[0]}"] = directory / f"{name}.{ext}"
    for step in _OPENSSL_STEPS:
        # Split the template before filling it in, so a path with spaces stays one argument.
        args = [arg.format_map(paths) for arg in step.split()]
        # Each certificate of the CA needs its own serial number.
        args = [str(secrets.randbits(63)) if arg == "SERIAL" else arg for arg in args]
        _run_openssl(args, env)
    return files


_NEW_KEY: Final = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
_OPENSSL_STEPS: Final = (
    f"req -x509 -config {{cnf}} -extensions ca {_NEW_KEY} -days {_DAYS} -keyout {{ca_key}}"
    " -out {ca} -subj /CN=logtide-kafka-test-CA",
    f"req -new -config {{cnf}} {_NEW_KEY} -keyout {{broker_raw}} -out {{broker_csr}}"
    " -subj /CN=localhost",
    f"x509 -req -in {{broker_csr}} -CA {{ca}} -CAkey {{ca_key}} -set_serial SERIAL -days {_DAYS}"
    " -extfile {cnf} -extensions server -out {broker_pem}",
    "pkcs12 -export -in {broker_pem} -inkey {broker_raw} -certfile {ca} -name broker"
    " -out {p12} -passout env:LOGTIDE_STORE_PASS",
    f"req -new -config {{cnf}} {_NEW_KEY} -keyout {{client_raw}} -out {{client_csr}}"
    " -subj /CN=logtide-client",
    f"x509 -req -in {{client_csr}} -CA {{ca}} -CAkey {{ca_key}} -set_serial SERIAL -days {_DAYS}"
    " -extfile {cnf} -extensions client -out {client_pem}",
    # librdkafka reads an encrypted PKCS#8 key with ssl.key.password.
    "pkcs8 -topk8 -in {client_raw} -out {client_key} -v2 aes-256-cbc -passout env:LOGTIDE_KEY_PASS",
)


def _run_openssl(args: list[str], env: Mapping[str, str]) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("TLS listeners need the openssl command on PATH")
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=dict(env), check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed:\n{result.stderr}")


def add_secure_listeners(
    settings: MutableMapping[str, object],
    security: SecurityConfig,
    ports: Mapping[Listener, int],
    tls: TlsFiles,
) -> None:
    """Add ``security``'s listeners (on ``ports``) to a node's ``server.properties``.

    ``settings`` must already name its PLAINTEXT and CONTROLLER listeners; the secured
    ones are appended to ``listeners``, ``advertised.listeners`` and the protocol map.
    """
    urls = [f"{name}://127.0.0.1:{ports[name]}" for name in security.listeners]
    settings["listeners"] = ",".join([str(settings["listeners"]), *urls])
    settings["advertised.listeners"] = ",".join([str(settings["advertised.listeners"]), *urls])
    settings["listener.security.protocol.map"] = ",".join(
        [str(settings["listener.security.protocol.map"])]
        + [f"{name}:{_PROTOCOL[name]}" for name in security.listeners]
    )
    settings.update(
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": tls.keystore,
            "ssl.keystore.password": tls.keystore_password,
            # Client certificates (MTLS) are checked against the same CA, read as PEM.
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls.ca_location,
        }
    )
    if "MTLS" in security.listeners:
        settings["listener.name.mtls.ssl.client.auth"] = "required"
    if security.sasl:
        settings["sasl.enabled.mechanisms"] = ",".join(MECHANISMS)
    plain_users = " ".join(f'user_{name}="{pw}"' for name, pw in security.users.items())
    for name in security.listeners:
        if not name.startswith("SASL"):
            continue
        for mechanism in MECHANISMS:
            # SCRAM checks the credentials stored at format time; PLAIN the user_ entries.
            options = f" {plain_users}" if mechanism == "PLAIN" else ""
            key = f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"
            settings[key] = f"{_JAAS_MODULE[mechanism]} required{options};"


def scram_format_args(security: SecurityConfig) -> list[str]:
    """``kafka-storage format`` arguments creating every user for both SCRAM mechanisms."""
    if not security.sasl:
        return []
    return [
        arg
        for name, password in security.users.items()
        for mechanism in MECHANISMS
        if mechanism.startswith("SCRAM")
        for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
    ]


def client_settings(
    security: SecurityConfig,
    tls: TlsFiles,
    listener: Listener,
    servers: str,
    *,
    mechanism: Mechanism = "SCRAM-SHA-512",
    user: str | None = None,
    password: str | None = None,
) -> dict[str, str]:
    """librdkafka settings for a client of ``listener`` at ``servers``.

    SASL listeners authenticate as ``user`` (default: the first configured user) with
    ``password`` (default: that user's; pass another to test a wrong one).
    """
    if listener not in security.listeners:
        raise ValueError(f"listener {listener!r} is not open (open: {security.listeners})")
    config = {"bootstrap.servers": servers, "security.protocol": _PROTOCOL[listener]}
    if _PROTOCOL[listener] in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = str(tls.ca_location)
    if listener == "MTLS":
        config["ssl.certificate.location"] = str(tls.client_certificate)
        config["ssl.key.location"] = str(tls.client_key)
        config["ssl.key.password"] = tls.client_key_password
    if listener.startswith("SASL"):
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}")
        name = user if user is not None else next(iter(security.users))
        if password is None:
            if name not in security.users:
                raise ValueError(f"no SASL user {name!r}: pass its password")
            password = security.users[name]
        config |= {"sasl.mechanism": mechanism, "sasl.username": name, "sasl.password": password}
    return config
