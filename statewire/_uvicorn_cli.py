"""The rest of uvicorn's command line on ``statewire serve``: each uvicorn option that
:mod:`statewire._asgi_cli` and :mod:`statewire._listen_cli` do not take is taken here,
either done as statewire does it or refused with a line saying why (exit status 2), so a
``uvicorn MODULE:app ...`` command line moved over never fails with argparse's bare
"unrecognized arguments".

Done:

* ``--loop uvloop`` is ``--uvloop``; ``asyncio`` the default; ``auto`` uvloop when it
  imports, else asyncio (uvicorn's default; statewire's stays asyncio when ``--loop`` is
  not given).
* ``--env-file PATH``: :mod:`statewire._env_file`, read before the target is imported.
* ``--log-config PATH``: :mod:`statewire._log_cli`.
* ``--backlog N``: the listen queue of the socket made without ``--listen`` (2048 for
  ``--host``/``--port``/``--uds`` when not given, uvicorn's default; a ``--listen``
  description says ``backlog=N`` itself, 50 when it does not, as Twisted's, as does
  ``serve``'s own default place without ``--backlog``).
* ``--timeout-graceful-shutdown SECONDS``: how long a graceful stop waits for the
  connections to close (the reactor's ``shutdown_timeout``, 5 s when not given) and then
  for an ASGI application's calls still under way (``calls_timeout``).
* ``--limit-max-requests-jitter N``: each process's request limit is
  ``--limit-max-requests`` plus a random 0 to N, so workers started together are not all
  replaced together.
* ``--reload-include``/``--reload-exclude`` PATTERN (repeatable): the files ``--reload``
  watches, as :mod:`statewire._watch` says; ``--reload-delay SECONDS``: how often it
  looks (0.25 s when not given, as uvicorn's).
* ``--http``, ``--ws``, ``--h11-max-incomplete-event-size``: uvicorn's choice of
  implementation; statewire serves HTTP/1.1 and WebSocket with its own, within its own
  limits, whichever is named (a log line says so). ``--use-colors``: its log lines have no
  colors.
* ``--access-log`` alone logs each request with the other logs; ``--no-access-log`` logs
  none (statewire's default): ``statewire.__main__``'s ``--access-log [DEST]``.

Refused, each with its reason: ``--loop zuvloop``, ``--http2``, ``--ws-max-queue``,
``--reset-contextvars``, ``--timeout-worker-healthcheck``. (The TLS options are
:mod:`statewire._listen_cli`'s.)
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

from statewire._asgi_cli import positive_seconds
from statewire._listen_cli import flag
from statewire._log_cli import check_config
from statewire._watch import check_pattern
from statewire.endpoints import serverDescription, serverParts

#: uvicorn's listen queue, for the sockets made from its spellings of ``--listen``
BACKLOG = 2048
#: seconds between two looks at the files ``--reload`` watches (uvicorn's)
RELOAD_DELAY = 0.25

#: uvicorn options not taken, by ``dest``: why, and what to do instead
REFUSED = {
    "http2": "statewire serves HTTP/1.1; HTTP/2 clients are a proxy's to take in front",
    "ws_max_queue": "statewire bounds a WebSocket session's unread messages by their bytes "
    "(--ws-max-size), not by their count",
    "reset_contextvars": "each request already runs in a copy of the context its connection "
    "was accepted in: what one request sets never reaches another",
    "timeout_worker_healthcheck": "statewire's supervisor restarts a worker that exits and "
    "pings none",
}
#: why ``--loop zuvloop`` is refused
_NO_ZUVLOOP = "statewire runs on asyncio or uvloop (--loop asyncio, uvloop or auto)"
#: the options taken as uvicorn has them but done statewire's way: what the log says
_OWN_WAY = {
    "http": "statewire's own HTTP/1.1 server serves (--http {} does not apply)",
    "ws": "statewire's own WebSocket implementation serves (--ws {} does not apply)",
    "h11_max_incomplete_event_size": "statewire's own head limits apply (8 KiB request line, "
    "64 KiB and 100 fields; --h11-max-incomplete-event-size {} does not apply)",
}


def _count(text: str, least: int = 1, most: int = (1 << 31) - 1) -> int:
    """A whole number from ``least`` to ``most``."""
    if not (text.isascii() and text.isdigit()) or not least <= int(text) <= most:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {least} to {most}")
    return int(text)


def _seconds(text: str) -> float:
    """Seconds, 0 or more."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_seconds(text)


def _pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _uvloop_imports() -> bool:
    """Whether uvloop is installed and imports."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The options, a group of their own in ``serve --help``."""
    group = serve.add_argument_group(
        "uvicorn's other options (taken as statewire does it, or refused saying why)",
        argument_default=argparse.SUPPRESS,
    )
    group.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop", "zuvloop"],
        help="uvloop: as --uvloop; auto: uvloop if installed (default: asyncio); zuvloop: refused",
    )
    group.add_argument("--env-file", metavar="PATH", help="set the variables of a .env file")
    group.add_argument(
        "--log-config",
        metavar="PATH",
        help="logging configuration: .json or .yaml for dictConfig, else fileConfig",
    )
    group.add_argument(
        "--backlog",
        type=_count,
        metavar="N",
        help=f"listen queue of the socket made without --listen (default {BACKLOG})",
    )
    group.add_argument(
        "--timeout-graceful-shutdown",
        type=_seconds,
        metavar="SECONDS",
        help="how long a graceful stop waits for connections, then for an ASGI "
        "application's calls (default 5)",
    )
    group.add_argument(
        "--limit-max-requests-jitter",
        type=lambda text: _count(text, 0),
        metavar="N",
        help="add a random 0 to N to --limit-max-requests, in each process",
    )
    group.add_argument(
        "--reload-include",
        action="append",
        type=_pattern,
        metavar="PATTERN",
        help="with --reload: watch the files matching this too (default *.py; repeatable)",
    )
    group.add_argument(
        "--reload-exclude",
        action="append",
        type=_pattern,
        metavar="PATTERN",
        help="with --reload: not the files or folders matching this (repeatable)",
    )
    group.add_argument(
        "--reload-delay",
        type=positive_seconds,
        metavar="SECONDS",
        help=f"with --reload: look for changes this often (default {RELOAD_DELAY})",
    )
    own = "statewire's own serves, whichever is named"
    group.add_argument("--http", choices=["auto", "h11", "httptools", "zttp"], help=own)
    group.add_argument(
        "--ws", choices=["auto", "websockets", "websockets-sansio", "wsproto"], help=own
    )
    group.add_argument(
        "--h11-max-incomplete-event-size", type=int, metavar="N", help="statewire's own limits"
    )
    group.add_argument(
        "--use-colors",
        action=argparse.BooleanOptionalAction,
        help="statewire's log lines have no colors",
    )
    for dest in REFUSED:
        name = flag(dest)
        if dest in ("http2", "reset_contextvars"):
            group.add_argument(name, action="store_true", help="refused, saying why")
        else:
            group.add_argument(name, metavar="VALUE", help="refused, saying why")


def settle(args: argparse.Namespace) -> list[str]:
    """Check the options given, and put them where ``serve`` reads them: ``--loop`` into
    ``args.uvloop``, the ``.env`` file into the environment; ``ValueError`` (one line) for
    a refused option or a mistake. The lines the log should say (the options done
    statewire's own way)."""
    refused = next((dest for dest in REFUSED if hasattr(args, dest)), None)
    if refused is not None:
        raise ValueError(f"{flag(refused)}: {REFUSED[refused]}")
    loop = getattr(args, "loop", None)
    if loop is not None:
        if loop == "zuvloop":
            raise ValueError(f"--loop zuvloop: {_NO_ZUVLOOP}")
        if args.uvloop and loop == "asyncio":
            raise ValueError("--loop asyncio and --uvloop: one loop")
        imports = loop != "asyncio" and _uvloop_imports()  # (auto falls back, as uvicorn's)
        if loop == "uvloop" and not imports:
            raise ValueError("--loop uvloop: uvloop does not import (pip install uvloop)")
        args.uvloop = args.uvloop or imports
    if hasattr(args, "limit_max_requests_jitter") and args.limit_max_requests is None:
        raise ValueError("--limit-max-requests-jitter goes with --limit-max-requests")
    for dest in ("reload_include", "reload_exclude", "reload_delay"):
        if hasattr(args, dest) and not args.reload:
            raise ValueError(f"{flag(dest)} goes with --reload")
    if hasattr(args, "log_config"):
        check_config(args.log_config)
    if hasattr(args, "env_file"):
        from statewire._env_file import load

        try:
            load(args.env_file)
        except OSError as error:
            raise ValueError(f"--env-file: {error.strerror or error}: {args.env_file}") from None
        except ValueError as error:
            raise ValueError(f"--env-file: {error}") from None
    return [_OWN_WAY[dest].format(getattr(args, dest)) for dest in _OWN_WAY if hasattr(args, dest)]


def with_backlog(
    descriptions: list[str], backlog: int | None, uvicorn_spelled: bool, given: bool = False
) -> list[str]:
    """``descriptions`` with ``--backlog``'s queue (or uvicorn's default, for those
    ``--host``/``--port``/``--uds`` made; ``given``: they are ``--listen``'s, which say
    their own); ``ValueError`` where it cannot apply."""
    if given:
        if backlog is not None:
            raise ValueError("--backlog: with --listen, put backlog=N in its description")
        return descriptions
    if backlog is None and not uvicorn_spelled:
        return descriptions  # (serve's own default place: Twisted's queue, as before)
    out = []
    for description in descriptions:
        kind, values = serverParts(description)
        if kind in ("fd", "systemd"):
            if backlog is not None:
                raise ValueError("--backlog: the socket of --fd listens already")
            out.append(description)
            continue
        out.append(serverDescription(kind, {**values, "backlog": str(backlog or BACKLOG)}))
    return out


def request_limit(args: argparse.Namespace) -> int | None:
    """This process's request limit: ``--limit-max-requests`` and its jitter."""
    limit: int | None = args.limit_max_requests
    if limit is None:
        return None
    return limit + random.randint(0, getattr(args, "limit_max_requests_jitter", 0))


def worker_flags(args: argparse.Namespace) -> list[str]:
    """The options here a worker of ``--workers`` needs again (``--loop`` is passed as
    ``--uvloop``; the ``.env`` file's variables are inherited)."""
    flags = []
    if hasattr(args, "log_config"):
        flags.append(f"--log-config={os.path.abspath(args.log_config)}")
    for dest in ("timeout_graceful_shutdown", "limit_max_requests_jitter"):
        if hasattr(args, dest):
            flags.append(f"{flag(dest)}={getattr(args, dest)}")
    return flags


def options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``serve`` itself reads of these options, by ``dest`` (``None``: not given)."""
    return {
        dest: getattr(args, dest, None)
        for dest in (
            "log_config",
            "timeout_graceful_shutdown",
            "reload_include",
            "reload_exclude",
            "reload_delay",
            "backlog",
        )
    }
