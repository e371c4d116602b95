"""Echo (the seed document's first server), served through an endpoint.

python examples/echo.py --port 8007
statewire serve examples/echo.py:factory --listen tcp:8007:interface=127.0.0.1
"""

from __future__ import annotations

from statewire.protocol import Factory, Protocol


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


factory = Factory.forProtocol(Echo)


def main() -> None:
    from _cli import announce, options

    from statewire import reactor
    from statewire.endpoints import TCP4ServerEndpoint

    args = options(__doc__)
    endpoint = TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
    endpoint.listen(factory).add_done_callback(lambda done: announce(done.result()))
    reactor.run()


if __name__ == "__main__":
    main()
