"""A real redis-server for the RESP tests (the module-scoped fixtures are in conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from statewire.testing.differential import HOST, server


def start_redis(*extra: str) -> Iterator[int]:
    """Run redis-server on a free loopback port, persistence off; yield the port."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    persistence_off = ("--save", "", "--appendonly", "no")
    with server(
        [executable, *persistence_off, "--port", "{port}", "--bind", HOST, *extra]
    ) as port:
        yield port
