"""Shared fixtures and the Hypothesis profiles.

The default profile, ``ci``, is derandomized: the same examples on every run, so the suite
is deterministic. ``HYPOTHESIS_PROFILE=long`` explores far more examples, randomly, for a
local run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from statewire.framing import _accel

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile(
    "long",
    derandomize=False,  # stated: under CI Hypothesis's own default is derandomized
    max_examples=2000,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_C_NAMES = ("cut_lines", "cut_netstring", "cut_prefixed", "cut_resp", "one_resp")


@pytest.fixture(params=["c", "python"])
def accel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with the C accelerator and with the pure-Python decoders."""
    if request.param == "c":
        if not _accel.available():
            pytest.skip("the C accelerator is not built")
    else:
        for name in _C_NAMES:
            monkeypatch.setattr(_accel, name, None)
    yield request.param


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A real redis-server on a free loopback port, for this module."""
    from resp_helpers import start_redis

    yield from start_redis()


@pytest.fixture(scope="module")
def mini_port() -> Iterator[int]:
    """miniredis served by ``statewire serve`` in its own process, for this module."""
    from process_helpers import running

    target = "examples/miniredis.py:factory"
    listen = "tcp:0:interface=127.0.0.1"
    with running("-m", "statewire", "serve", target, "--listen", listen) as served:
        yield served.port
        served.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (the paths), made for this
    module."""
    from runtime_helpers import self_signed_certificate

    return self_signed_certificate(tmp_path_factory.mktemp("tls"))
