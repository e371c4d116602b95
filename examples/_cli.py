"""The command line every example shares: where to listen, and a line saying where it does."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any


def options(
    description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    """Parse the command line: ``--port``, ``--interface``, and what ``extra`` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=8007, help="TCP port (0: any free one)")
    parser.add_argument(
        "--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    if extra is not None:
        extra(parser)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    return parser.parse_args()


def announce(port: Any) -> None:
    """Print the listening address (tests read it to find a port chosen by the system)."""
    host = port.getHost()
    print(f"listening on {host.host}:{host.port}", flush=True)


def run_with_endpoint(
    factory: Any, description: str, args: argparse.Namespace | None = None
) -> None:
    """Serve ``factory`` the seed's first way: an endpoint's ``listen``, then ``run()``
    (``args``: the command line already parsed by :func:`options`)."""
    from statewire import reactor
    from statewire.endpoints import TCP4ServerEndpoint

    if args is None:
        args = options(description)
    endpoint = TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
    endpoint.listen(factory).add_done_callback(lambda done: announce(done.result()))
    reactor.run()


def run_with_listen_tcp(factory: Any, description: str) -> None:
    """Serve ``factory`` the seed's second way: ``reactor.listenTCP``, then ``run()``."""
    from statewire import reactor

    args = options(description)
    announce(reactor.listenTCP(args.port, factory, interface=args.interface))
    reactor.run()
