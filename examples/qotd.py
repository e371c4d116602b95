"""Quote of the day, as the seed document serves it: a Factory whose protocol is QOTD, an
endpoint, ``reactor.run()``.

    python examples/qotd.py --port 8007
"""

from __future__ import annotations

from statewire.protocol import Factory, Protocol


class QOTD(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"An apple a day keeps the doctor away\r\n")
        self.transport.loseConnection()


factory = Factory()
factory.protocol = QOTD


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
