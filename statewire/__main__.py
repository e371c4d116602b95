"""The ``statewire`` command line: ``serve`` a protocol, or run the framing ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys


def _serve(targets: str, listen: list[str], uvloop: bool) -> int:
    from statewire import reactor
    from statewire.endpoints import serverFromString
    from statewire.error import CannotListenError
    from statewire.target import TargetError, factory_from

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    log = logging.getLogger("statewire.serve")
    try:
        if uvloop:
            reactor.use_uvloop()
        factory = factory_from(targets)
        for description in listen:
            serverFromString(reactor, description).listen(factory)
    except (TargetError, ValueError, ImportError) as error:
        print(f"statewire serve: {error}", file=sys.stderr)
        return 2
    except CannotListenError as error:
        print(f"statewire serve: {error}", file=sys.stderr)
        return 1
    loop = "uvloop" if uvloop else "asyncio"
    log.info("serving %s on %s (%s)", targets, ", ".join(listen), loop)
    reactor.run()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``statewire`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="statewire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a protocol until SIGINT or SIGTERM")
    serve.add_argument(
        "target",
        help="FILE.py:NAME or MODULE:NAME: a Factory, a function making one, or a Protocol class",
    )
    serve.add_argument(
        "--listen",
        action="append",
        metavar="DESCRIPTION",
        help="where to listen, e.g. tcp:8007:interface=127.0.0.1 (repeatable; default tcp:8007)",
    )
    serve.add_argument("--uvloop", action="store_true", help="run on uvloop")
    demo = commands.add_parser("demo", help="frame a sample byte stream and print the frames")
    demo.add_argument("--seed", type=int, default=2026, help="seed for the random read sizes")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.target, args.listen or ["tcp:8007"], args.uvloop)
    from statewire import demo as demo_module

    demo_module.run(sys.stdout, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
