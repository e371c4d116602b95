"""Echo that refuses connections past a limit, as in the seed document.

Past ``limit`` simultaneous connections a new one is told "Too many connections, try later"
and closed; a slot frees up when a connection closes. Served with ``reactor.listenTCP``.

    python examples/limited_echo.py --port 8007
"""

from __future__ import annotations

from typing import Any

from statewire.protocol import Factory, Protocol


class Echo(Protocol):
    def connectionMade(self) -> None:
        self.factory.numProtocols = self.factory.numProtocols + 1
        if self.factory.numProtocols > self.factory.limit:
            self.transport.write(b"Too many connections, try later")
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.numProtocols = self.factory.numProtocols - 1

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class EchoFactory(Factory):
    protocol = Echo

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.numProtocols = 0


factory = EchoFactory()


def main() -> None:
    from _cli import run_with_listen_tcp

    run_with_listen_tcp(factory, __doc__)


if __name__ == "__main__":
    main()
