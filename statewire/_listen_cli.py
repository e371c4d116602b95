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

They stand for ``--listen``, so either is refused with it, as ``--uds`` and ``--fd`` are
with each other or with ``--host`` and ``--port``, and ``--ssl-keyfile`` without
``--ssl-certfile``. uvicorn's other TLS options (a key's password, ciphers, client
certificates) are not there: an ``ssl:`` description or a factory of one's own takes them.
"""

from __future__ import annotations

import argparse
import os

from statewire.endpoints import serverDescription

#: uvicorn's defaults, for the one of ``--host`` and ``--port`` not given
HOST, PORT = "127.0.0.1", 8000
#: the options here, by ``dest``
_DESTS = ("host", "port", "uds", "fd", "ssl_keyfile", "ssl_certfile")


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


def descriptions(args: argparse.Namespace, listen: list[str] | None) -> list[str] | None:
    """The description the options given stand for (``None``: none given), or
    ``ValueError`` for a combination that means nothing."""
    given = {dest: getattr(args, dest) for dest in _DESTS if hasattr(args, dest)}
    if not given:
        return None
    named = ", ".join("--" + dest.replace("_", "-") for dest in given)
    if listen:
        raise ValueError(f"{named} stand for --listen: give one or the other")
    if "ssl_keyfile" in given and "ssl_certfile" not in given:
        raise ValueError("--ssl-keyfile goes with --ssl-certfile")
    for dest in ("ssl_certfile", "ssl_keyfile"):
        if dest in given and not os.path.isfile(given[dest]):
            raise ValueError(f"--{dest.replace('_', '-')}: no such file: {given[dest]}")
    tls = {}
    if "ssl_certfile" in given:
        tls = {
            "privateKey": given.get("ssl_keyfile", given["ssl_certfile"]),
            "certKey": given["ssl_certfile"],
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
