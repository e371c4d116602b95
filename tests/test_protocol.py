"""Protocol and Factory without sockets: Twisted's semantics, with an in-memory transport."""

from __future__ import annotations

from typing import Any

from statewire.error import ConnectionDone, Failure, connectionDone
from statewire.protocol import ClientFactory, Factory, Protocol


class MemoryTransport:
    """Anything with the transport methods is a transport."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def loseConnection(self) -> None:
        self.closed = True


class Greeter(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello " + self.factory.name)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data.upper())


class GreeterFactory(Factory):
    protocol = Greeter

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.calls: list[str] = []

    def startFactory(self) -> None:
        self.calls.append("start")

    def stopFactory(self) -> None:
        self.calls.append("stop")


def test_make_connection_accepts_any_transport() -> None:
    factory = GreeterFactory(b"you")
    protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
    assert protocol.factory is factory
    transport = MemoryTransport()
    protocol.makeConnection(transport)
    assert protocol.connected == 1
    assert protocol.transport is transport
    protocol.dataReceived(b"abc")
    assert transport.written == [b"hello you", b"ABC"]


def test_for_protocol_passes_arguments_to_the_factory() -> None:
    factory = GreeterFactory.forProtocol(Protocol, b"me")
    assert isinstance(factory, GreeterFactory)
    assert factory.protocol is Protocol
    assert factory.name == b"me"


def test_start_and_stop_factory_run_once_across_ports() -> None:
    factory = GreeterFactory(b"x")
    factory.doStart()
    factory.doStart()
    factory.doStop()
    assert factory.calls == ["start"]
    factory.doStop()
    assert factory.calls == ["start", "stop"]
    factory.doStop()  # one stop too many is ignored
    assert factory.calls == ["start", "stop"]


def test_client_factory_hooks_exist_and_default_to_nothing() -> None:
    factory = ClientFactory()
    factory.startedConnecting(None)
    factory.clientConnectionFailed(None, Failure(ConnectionDone()))
    factory.clientConnectionLost(None, connectionDone)


def test_failure_checks_and_messages() -> None:
    reason = Failure(ConnectionDone())
    assert reason.check(ValueError, ConnectionDone) is ConnectionDone
    assert reason.check(ValueError) is None
    assert reason.getErrorMessage() == "Connection was closed cleanly."
    assert "ConnectionDone" in repr(reason)


def test_protocol_defaults_do_nothing() -> None:
    protocol: Any = Protocol()
    protocol.dataReceived(b"x")
    protocol.connectionLost(connectionDone)
