"""The in-memory pieces of the testing kit and its pytest plugin's fixtures."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from statewire.basic import LineReceiver
from statewire.protocol import Protocol
from statewire.testing import differential
from statewire.testing.memory import Clock, Loopback, StringTransport
from statewire.wire import Echo


class Greeter(LineReceiver):
    def connectionMade(self) -> None:
        self.sendLine(b"hello")

    def lineReceived(self, line: bytes) -> None:
        if line == b"bye":
            self.transport.loseConnection()
        else:
            self.sendLine(line.upper())


class Client(LineReceiver):
    def connectionMade(self) -> None:
        self.lines: list[bytes] = []
        self.sendLine(b"one")
        self.sendLine(b"bye")

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)


def test_loopback_joins_two_protocols_in_memory() -> None:
    link = Loopback(Client(), Greeter())
    link.pump()
    assert link.client.lines == [b"hello", b"ONE"]
    assert link.server_transport.disconnecting


def test_loopback_refuses_endless_chatter() -> None:
    class Talker(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"x")

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    link = Loopback(Talker(), Echo())
    try:
        link.pump(rounds=10)
    except RuntimeError as error:
        assert "still talking" in str(error)
    else:
        raise AssertionError("pump() should give up")


def test_the_clock_runs_calls_in_order_and_cancels() -> None:
    clock = Clock()
    ran: list[str] = []
    clock.callLater(2, ran.append, "late")
    clock.callLater(1, ran.append, "early")
    cancelled = clock.callLater(1.5, ran.append, "never")
    cancelled.cancel()
    clock.advance(1)
    assert ran == ["early"] and clock.seconds() == 1
    clock.advance(5)
    assert ran == ["early", "late"] and clock.pending() == []


def test_string_transport_refuses_str_and_records_producers() -> None:
    transport = StringTransport()
    try:
        transport.write("text")  # type: ignore[arg-type]
    except TypeError as error:
        assert "encode" in str(error)
    producer = object()
    transport.registerProducer(producer, True)
    assert transport.producer is producer and transport.streaming


def test_plugin_fixtures(
    clock: Clock, string_transport: StringTransport, connect: Callable[[Any], StringTransport]
) -> None:
    transport = connect(Greeter())
    assert transport.value() == b"hello\r\n"
    assert isinstance(string_transport, StringTransport) and clock.seconds() == 0


def test_loopback_fixture_shares_the_clock(
    clock: Clock, loopback: Callable[[Any, Any], Loopback]
) -> None:
    link = loopback(Client(), Greeter())
    link.advance(3)
    assert link.clock is clock and clock.seconds() == 3
    assert link.client.lines == [b"hello", b"ONE"]


def test_plugin_profiles_are_registered() -> None:
    assert settings.get_profile("statewire-ci").derandomize
    assert settings.get_profile("statewire-long").max_examples == 2000


def _ephemeral_low() -> int | None:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_free_port_is_free_and_outside_the_ports_the_system_hands_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low = _ephemeral_low()
    ports = {differential.free_port() for _ in range(20)}
    for port in ports:
        with socket.socket() as sock:
            sock.bind((differential.HOST, port))  # free: nothing holds it
        if low is not None and low - differential.FREE_PORTS_FROM >= 1000:
            assert differential.FREE_PORTS_FROM <= port < low
    assert len(ports) > 1  # picked at random, not the same each time
    # no room below the system's range: its own choice
    monkeypatch.setattr(differential, "FREE_PORTS_FROM", 65000)
    port = differential.free_port()
    with socket.socket() as sock:
        sock.bind((differential.HOST, port))
    if low is not None:
        assert port >= low
