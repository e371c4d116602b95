"""The ``statewire`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the ``statewire`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="statewire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="frame a sample byte stream and print the frames")
    demo.add_argument("--seed", type=int, default=2026, help="seed for the random read sizes")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from statewire import demo as demo_module

        demo_module.run(sys.stdout, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
