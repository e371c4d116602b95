"""The command line every example shares: where to listen, and a line saying where it does."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def options(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=8007, help="TCP port (0: any free one)")
    parser.add_argument(
        "--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    return parser.parse_args()


def announce(port: Any) -> None:
    """Print the listening address (tests read it to find a port chosen by the system)."""
    host = port.getHost()
    print(f"listening on {host.host}:{host.port}", flush=True)
