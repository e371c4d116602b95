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
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
