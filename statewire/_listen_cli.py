"""``statewire serve``'s uvicorn spellings of ``--listen``: ``--host``, ``--port``,
``--uds``, ``--fd``, ``--ssl-keyfile`` and ``--ssl-certfile``, each made an endpoint
description (:mod:`statewire.endpoints`), so that a ``uvicorn MODULE:app --host 0.0.0.0
--port 8000`` command line works as it is.

* ``--host HOST --port PORT``: ``tcp:PORT:interface=HOST`` (``tcp6:`` for an IPv6
  address); either alone takes uvicorn's default for the other (``127.0.0.1``, ``8000``);
  with ``--ssl-certfile``, ``ssl:`` instead, the key from ``--ssl-keyfile`` (else from the
  certificate's file, as ``ssl.SSLContext.load_cert_chain`` reads it).
* ``--uds PATH``: ``unix:PATH``; ``--fd N``: ``fd:N`` (with the TLS files, served with
  TLS).

* uvicorn's other TLS options, each a TLS choice of the description (see
  :mod:`statewire.endpoints`): ``--ssl-keyfile-password`` (put in the environment, as
  ``STATEWIRE_SSL_KEYFILE_PASSWORD``, and named by ``passwordEnv=``: workers inherit it, and
  it is on no worker's command line), ``--ssl-ca-certs`` (``caCerts=``), ``--ssl-cert-reqs``
  0, 1 or 2 (``verify=none``, ``optional``, ``required``; 0 by default, as uvicorn's: with
  ``--ssl-ca-certs`` alone no client certificate is asked for), ``--ssl-ciphers``
  (``ciphers=``; given only when given: OpenSSL's defaults otherwise, not uvicorn's
  ``TLSv1``), ``--ssl-version`` (uvicorn's number of an ``ssl.PROTOCOL_*``: 2 and 17, its
  default, are TLS 1.2 and 1.3; 5 is TLS 1.2 alone; TLS 1.0 and 1.1, 3 and 4, are refused).

They stand for ``--listen``, so either is refused with it, as ``--uds`` and ``--fd`` are
with each other or with ``--host`` and ``--port``, and ``--ssl-keyfile`` (or any other TLS
option) without ``--ssl-certfile``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from statewire.endpoints import serverDescription

#: uvicorn's defaults, for the one of ``--host`` and ``--port`` not given
HOST, PORT = "127.0.0.1", 8000
#: the options here, by ``dest``
_DESTS = (
    "host",
    "port",
    "uds",
    "fd",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_keyfile_password",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_ciphers",
    "ssl_version",
)
#: the environment variable ``--ssl-keyfile-password`` is handed on in
PASSWORD_ENV = "STATEWIRE_SSL_KEYFILE_PASSWORD"
#: ``--ssl-cert-reqs``'s numbers (``ssl.CERT_*``) as ``verify=`` says them
_CERT_REQS = {0: "none", 1: "optional", 2: "required"}
#: ``--ssl-version``'s numbers (``ssl.PROTOCOL_*``): the TLS versions each allows (``None``:
#: TLS 1.2 and 1.3, the defaults), or why it is refused
_SSL_VERSIONS: dict[int, tuple[str, str] | str | None] = {
    2: None,
    17: None,
    5: ("1.2", "1.2"),
    3: "TLS 1.0 is not served (it is insecure: RFC 8996)",
    4: "TLS 1.1 is not served (it is insecure: RFC 8996)",
    16: "that is a client's protocol",
}


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The options, a group of their own in ``serve --help``."""
    group = serve.add_argument_group(
        "uvicorn's spellings of --listen (each stands for a --listen description)",
        argument_default=argparse.SUPPRESS,
    )
    group.add_argument(
        "--host", help=f"listen on this address (default {HOST}): tcp:PORT:interface=HOST"
    )
    group.add_argument("--port", type=int, help=f"listen on this TCP port (default {PORT})")
    group.add_argument("--uds", metavar="PATH", help="listen on this UNIX socket: unix:PATH")
    group.add_argument(
        "--fd", type=int, metavar="N", help="serve the socket on this file descriptor: fd:N"
    )
    group.add_argument(
        "--ssl-keyfile", metavar="FILE", help="with --ssl-certfile: the private key (PEM)"
    )
    group.add_argument(
        "--ssl-certfile", metavar="FILE", help="serve TLS with this certificate (PEM)"
    )
    group.add_argument(
        "--ssl-keyfile-password", metavar="PASSWORD", help="the private key's passphrase"
    )
    group.add_argument(
        "--ssl-ca-certs",
        metavar="FILE",
        help="the authorities whose client certificates are accepted (PEM): caCerts=",
    )
    group.add_argument(
        "--ssl-cert-reqs",
        type=int,
        metavar="N",
        help="client certificates: 0 not asked for (default), 1 optional, 2 required",
    )
    group.add_argument("--ssl-ciphers", metavar="LIST", help="an OpenSSL cipher list")
    group.add_argument(
        "--ssl-version",
        type=int,
        metavar="N",
        help="an ssl.PROTOCOL_* number: 17 or 2 (default: TLS 1.2 and 1.3), 5 (TLS 1.2 alone)",
    )


def descriptions(args: argparse.Namespace, listen: list[str] | None) -> list[str] | None:
    """The description the options given stand for (``None``: none given), or
    ``ValueError`` for a combination that means nothing."""
    given = {dest: getattr(args, dest) for dest in _DESTS if hasattr(args, dest)}
    if not given:
        return None
    named = ", ".join(flag(dest) for dest in given)
    if listen:
        raise ValueError(f"{named} stand for --listen: give one or the other")
    alone = [d for d in given if d.startswith("ssl_") and d != "ssl_certfile"]
    if alone and "ssl_certfile" not in given:
        raise ValueError(f"{flag(alone[0])} goes with --ssl-certfile")
    for dest in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        if dest in given and not os.path.isfile(given[dest]):
            raise ValueError(f"{flag(dest)}: no such file: {given[dest]}")
    tls = {}
    if "ssl_certfile" in given:
        tls = {
            "privateKey": given.get("ssl_keyfile", given["ssl_certfile"]),
            "certKey": given["ssl_certfile"],
            **_tls_choices(given),
        }
    kinds = [dest for dest in ("uds", "fd") if dest in given]
    if kinds and (len(kinds) > 1 or "host" in given or "port" in given):
        raise ValueError(f"{named}: one place to listen (--uds, --fd, or --host and --port)")
    if "uds" in given:
        if tls:
            raise ValueError("--uds serves no TLS here: use --host and --port, or --fd")
        return [serverDescription("unix", {"address": given["uds"]})]
    if "fd" in given:
        return [serverDescription("fd", {"fileno": str(given["fd"]), **tls})]
    host, port = given.get("host", HOST), given.get("port", PORT)
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} is not in 0 to 65535")
    kind = "ssl" if tls else "tcp6" if ":" in host else "tcp"
    return [serverDescription(kind, {"port": str(port), "interface": host, **tls})]


def flag(dest: str) -> str:
    """The option of ``dest`` as the command line spells it (``--ssl-ca-certs``)."""
    return "--" + dest.replace("_", "-")


def _tls_choices(given: dict[str, Any]) -> dict[str, str]:
    """The description's TLS choices for uvicorn's TLS options beyond the two files
    (``ValueError`` for a number that means nothing); a key's passphrase is put in the
    environment, under :data:`PASSWORD_ENV`."""
    choices: dict[str, str] = {}
    if "ssl_keyfile_password" in given:
        os.environ[PASSWORD_ENV] = given["ssl_keyfile_password"]
        choices["passwordEnv"] = PASSWORD_ENV
    requirement = given.get("ssl_cert_reqs", 0)
    if requirement not in _CERT_REQS:
        raise ValueError(f"--ssl-cert-reqs {requirement}: 0 (none), 1 (optional) or 2 (required)")
    if requirement and "ssl_ca_certs" not in given:
        raise ValueError(
            f"--ssl-cert-reqs {requirement} asks for client certificates: give the "
            "authorities that sign them (--ssl-ca-certs)"
        )
    if "ssl_ca_certs" in given:
        choices["caCerts"] = given["ssl_ca_certs"]
        choices["verify"] = _CERT_REQS[requirement]
    if "ssl_ciphers" in given:
        choices["ciphers"] = given["ssl_ciphers"]
    version = given.get("ssl_version", 17)
    if version not in _SSL_VERSIONS:
        raise ValueError(f"--ssl-version {version}: 17 or 2 (TLS 1.2 and 1.3), or 5 (TLS 1.2)")
    allowed = _SSL_VERSIONS[version]
    if isinstance(allowed, str):
        raise ValueError(f"--ssl-version {version}: {allowed}")
    if allowed is not None:
        choices["minVersion"], choices["maxVersion"] = allowed
    return choices
