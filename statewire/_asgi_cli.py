"""``statewire serve --asgi``'s options: uvicorn's of the same names, for
:func:`statewire.protocols.asgi.asgi` (and its :class:`~statewire.protocols.http.HTTPFactory`).

Someone moving a ``uvicorn MODULE:app --root-path /api --no-server-header`` command line
keeps it: each option here has uvicorn's name, meaning and default, but two:

* ``--max-body`` is statewire's own (``HTTPFactory``'s ``max_body``, 1 MiB by default:
  uvicorn sets no limit, so an application taking larger uploads needs it);
* ``--timeout-keep-alive`` is the HTTP server's 15 s by default (uvicorn's: 5), and is the
  deadline of a whole head too (:func:`statewire.protocols.http.keeping_alive`).

Sizes take ``K``, ``M`` and ``G`` (binary multiples) as well as bytes. An option given
without ``--asgi`` is refused (a statewire factory is made by its module, which sets these
itself), and a bad value is a one-line error, exit status 2: from argparse, or from
``asgi()`` as it would be from code.

``--limit-max-requests`` (:mod:`statewire._request_limit`) and ``--limit-concurrency``
are ``serve``'s for any HTTP factory; :mod:`statewire._listen_cli` takes uvicorn's
spellings of ``--listen``, and :mod:`statewire._uvicorn_cli` the rest of its options.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

#: the words taken for true and false by ``--ws-per-message-deflate`` (uvicorn's: click's)
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}

#: the ``serve`` options that are ``asgi()``'s, by their ``dest``
_DESTS = (
    "factory",
    "interface",
    "root_path",
    "lifespan",
    "proxy_headers",
    "forwarded_allow_ips",
    "server_header",
    "date_header",
    "header",
    "timeout_keep_alive",
    "max_body",
    "ws_max_size",
    "ws_ping_interval",
    "ws_ping_timeout",
    "ws_per_message_deflate",
)


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def _seconds(text: str) -> float | None:
    """Positive seconds, or ``none`` (never: as ``asgi(..., ws_ping_interval=None)``)."""
    if text.strip().lower() == "none":
        return None
    return positive_seconds(text, ", or none")


def positive_seconds(text: str, alternative: str = "") -> float:
    """Positive seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds are finite and positive{alternative}")
    return seconds


#: the suffixes a size may take: binary multiples (``16M`` is 16 MiB)
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(text: str) -> int:
    """Bytes: a positive integer, or one with ``K``, ``M`` or ``G`` (KiB, MiB, GiB)."""
    digits = text.strip()
    unit = _UNITS.get(digits[-1:].lower(), 1)
    if unit != 1:
        digits = digits[:-1]
    if not digits.isdigit() or not digits.isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes (or of K, M, G)")
    size = int(digits) * unit
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is positive")
    return size


def _header(text: str) -> tuple[str, str]:
    """``NAME:VALUE`` (spaces around either taken off), checked as a response field."""
    name, colon, value = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VALUE")
    return name.strip(), value.strip()


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The ASGI options, a group of their own in ``serve --help``."""
    group = serve.add_argument_group(
        "ASGI options (with --asgi; uvicorn's options of these names)",
        argument_default=argparse.SUPPRESS,  # (left out when not given: see given())
    )
    group.add_argument(
        "--factory",
        action="store_true",
        help="TARGET is a function returning the application, called once with no arguments",
    )
    group.add_argument(
        "--interface",
        choices=["auto", "asgi3", "asgi2", "wsgi"],
        help="the application's interface: auto and asgi3 (the default), asgi2 (served as "
        "asgi3); wsgi is refused",
    )
    group.add_argument(
        "--root-path",
        metavar="PATH",
        help="the path prefix a proxy in front takes off: each scope's root_path, put back "
        "before its path",
    )
    group.add_argument(
        "--lifespan",
        choices=["auto", "on", "off"],
        help="the application's lifespan scope: auto (default: served unless the application "
        "refuses it), on (its failure stops the server), off",
    )
    group.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        help="believe X-Forwarded-Proto and X-Forwarded-For from the trusted proxies "
        "(default: yes)",
    )
    group.add_argument(
        "--forwarded-allow-ips",
        metavar="LIST",
        help="the trusted proxies: comma-separated addresses and networks, or * (default: "
        "$FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)",
    )
    group.add_argument(
        "--server-header",
        action=argparse.BooleanOptionalAction,
        help="send a Server field (default: yes)",
    )
    group.add_argument(
        "--date-header",
        action=argparse.BooleanOptionalAction,
        help="send a Date field (default: yes)",
    )
    group.add_argument(
        "--header",
        action="append",
        type=_header,
        metavar="NAME:VALUE",
        help="a field every response carries, e.g. X-Frame-Options:DENY (repeatable; a "
        "Server replaces the server's own)",
    )
    group.add_argument(
        "--timeout-keep-alive",
        type=positive_seconds,
        metavar="SECONDS",
        help="close a connection that has not sent its next request line this long after "
        "it opened or after the last response, or its field section this long after its "
        "request line (default 15; uvicorn's: 5, between requests only)",
    )
    group.add_argument(
        "--max-body",
        type=_size,
        metavar="BYTES",
        help="statewire's own: the largest request body taken, e.g. 100M (default 1M; 413 "
        "past it, answered from Content-Length before the body is read; uvicorn has no limit)",
    )
    group.add_argument(
        "--ws-max-size",
        type=_size,
        metavar="BYTES",
        help="the largest WebSocket message taken (default 16M; 1009 past it)",
    )
    group.add_argument(
        "--ws-ping-interval",
        type=_seconds,
        metavar="SECONDS",
        help="ping each WebSocket client this often (default 20; none: never)",
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="close a WebSocket client whose pong has not come this long after the ping "
        "(default 20; none: never)",
    )
    group.add_argument(
        "--ws-per-message-deflate",
        type=_boolean,
        metavar="BOOL",
        help="agree on permessage-deflate when a WebSocket client offers it (default true)",
    )


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The ASGI options the command line gave, by ``dest`` (those not given left out)."""
    return {dest: getattr(args, dest) for dest in _DESTS if hasattr(args, dest)}


#: the options given as flags (``--x``, ``--no-x``), not ``--x=VALUE``
_FLAGS = ("factory", "proxy_headers", "server_header", "date_header")
#: the options whose ``asgi()`` keyword has another name
_KEYWORDS = {
    "date_header": "date",
    "header": "headers",
    "timeout_keep_alive": "keep_alive_timeout",
}


def spelling(dest: str, value: Any) -> str:
    """How the option ``dest`` given ``value`` is spelled (``--no-server-header``), its
    value left out."""
    name = dest.replace("_", "-")
    return f"--no-{name}" if dest in _FLAGS and value is False else f"--{name}"


def as_flags(options: dict[str, Any]) -> list[str]:
    """``options`` (from :func:`given`) as command-line arguments again: what a supervisor
    passes on to its workers."""
    flags = []
    for dest, value in options.items():
        if dest == "header":
            flags += [f"--header={name}:{field}" for name, field in value]
        elif dest in _FLAGS:
            flags.append(spelling(dest, value))
        else:
            flags.append(f"{spelling(dest, value)}={'none' if value is None else value}")
    return flags


def asgi_options(options: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """Whether the target is a factory of the application (``--factory``), its interface
    (``--interface``), and the keyword arguments of ``asgi()`` the other options are."""
    keywords = {_KEYWORDS.get(dest, dest): value for dest, value in options.items()}
    factory = bool(keywords.pop("factory", False))
    interface = str(keywords.pop("interface", "auto"))
    if "server_header" in keywords:
        keywords["server"] = b"statewire" if keywords.pop("server_header") else None
    return factory, interface, keywords
