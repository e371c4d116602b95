"""statewire's pytest plugin (registered by installing statewire with Hypothesis present).

Fixtures: ``string_transport`` (a :class:`~statewire.testing.memory.StringTransport`),
``clock`` (a :class:`~statewire.testing.memory.Clock`), ``connect``, which connects a
protocol instance to a fresh transport and the test's clock and returns the transport, and
``loopback``, which joins a client and a server protocol in memory on the test's clock
(a :class:`~statewire.testing.memory.Loopback`).

Hypothesis profiles: ``statewire-ci`` (derandomized, no deadline: the same examples on
every run, for CI) and ``statewire-long`` (2000 random examples, for a local hunt). Choose
one with ``pytest --hypothesis-profile statewire-ci``, or with the environment variable
``HYPOTHESIS_PROFILE=statewire-ci`` (``ci`` and ``long`` name them too, unless the project
registers profiles of those names itself): the same variable statewire's own suite reads,
so a protocol's tests run deterministically in CI the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from statewire.testing.memory import Clock, Loopback, StringTransport

try:  # the plugin loads in every pytest run; Hypothesis is only the `testing` extra
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - depends on what is installed
    pass
else:
    # slow draws and big frames are what protocol tests are made of; fixtures are per test
    _QUIET = [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ]
    settings.register_profile(
        "statewire-ci",
        derandomize=True,
        max_examples=60,
        deadline=None,
        suppress_health_check=_QUIET,
    )
    # stated, not inherited: under CI Hypothesis's own default profile is derandomized
    settings.register_profile(
        "statewire-long",
        derandomize=False,
        max_examples=2000,
        deadline=None,
        suppress_health_check=_QUIET,
    )

#: short names ``HYPOTHESIS_PROFILE`` may use for statewire's profiles
_ALIASES = {"ci": "statewire-ci", "long": "statewire-long"}


def _registered(name: str) -> object:
    try:
        from hypothesis import settings

        return settings.get_profile(name)
    except Exception:  # Hypothesis missing, or no profile of that name
        return None


#: what the short names meant before any conftest ran: Hypothesis registers a ``ci``
#: profile of its own, which statewire's alias replaces unless the project re-registers it
_BEFORE_CONFTESTS = {name: _registered(name) for name in _ALIASES}


def pytest_configure(config: pytest.Config) -> None:
    """Load the profile ``HYPOTHESIS_PROFILE`` names, if any (after the conftests, which
    may have registered it). ``--hypothesis-profile`` wins: Hypothesis's plugin loads it."""
    name = os.environ.get("HYPOTHESIS_PROFILE")
    if not name or config.getoption("hypothesis_profile", None):
        return
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - depends on what is installed
        return
    alias = _ALIASES.get(name)
    mine = _registered(name)
    if alias is not None and (mine is None or mine is _BEFORE_CONFTESTS[name]):
        name = alias
    try:
        settings.load_profile(name)
    except Exception:  # not registered: leave it to Hypothesis, which reports it
        return


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


@pytest.fixture
def loopback(clock: Clock) -> Callable[[Any, Any], Loopback]:
    """``loopback(client, server)``: the two protocols joined in memory, sharing the test's
    clock; ``.pump()`` moves the bytes, ``.advance(seconds)`` moves time then pumps."""

    def join(client: Any, server: Any) -> Loopback:
        return Loopback(client, server, clock)

    return join
