"""statewire's pytest plugin (registered by installing statewire with Hypothesis present).

Fixtures: ``string_transport`` (a :class:`~statewire.testing.memory.StringTransport`),
``clock`` (a :class:`~statewire.testing.memory.Clock`), and ``connect``, which connects a
protocol instance to a fresh transport and the test's clock and returns the transport.

Hypothesis profiles: ``statewire-ci`` (derandomized, no deadline: the same examples on
every run, for CI) and ``statewire-long`` (2000 random examples, for a local hunt). Choose
one with ``pytest --hypothesis-profile statewire-ci``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from statewire.testing.memory import Clock, StringTransport

try:  # the plugin loads in every pytest run; Hypothesis is only the `testing` extra
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - depends on what is installed
    pass
else:
    _QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile(
        "statewire-ci",
        derandomize=True,
        max_examples=60,
        deadline=None,
        suppress_health_check=_QUIET,
    )
    settings.register_profile(
        "statewire-long", max_examples=2000, deadline=None, suppress_health_check=_QUIET
    )


@pytest.fixture
def string_transport() -> StringTransport:
    """A transport that keeps what is written in memory."""
    return StringTransport()


@pytest.fixture
def clock() -> Clock:
    """A clock that moves only when the test calls ``advance``."""
    return Clock()


@pytest.fixture
def connect(clock: Clock) -> Callable[[Any], StringTransport]:
    """``connect(protocol)``: attach ``protocol`` to a new in-memory transport and to the
    test's clock (for declared protocols' timeouts); return the transport."""

    def attach(protocol: Any) -> StringTransport:
        transport = StringTransport()
        protocol.clock = clock
        protocol.makeConnection(transport)
        return transport

    return attach
