"""Quote of the day with a configurable quote, made two ways as in the seed document: by a
factory function (``makeQOTDFactory``) and by a ``Factory`` subclass (``QOTDFactory``).

    python examples/qotd_factory.py --port 8007
    statewire serve examples/qotd_factory.py:makeQOTDFactory
"""

from __future__ import annotations

from statewire.protocol import Factory, Protocol


class QOTD(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.quote.encode() + b"\r\n")
        self.transport.loseConnection()


def makeQOTDFactory(quote: str | None = None) -> Factory:
    factory = Factory()
    factory.protocol = QOTD
    factory.quote = quote or "An apple a day keeps the doctor away"  # type: ignore[attr-defined]
    return factory


class QOTDFactory(Factory):
    protocol = QOTD

    def __init__(self, quote: str | None = None) -> None:
        self.quote = quote or "An apple a day keeps the doctor away"


def main() -> None:
    from _cli import run_with_listen_tcp

    run_with_listen_tcp(QOTDFactory("configurable quote"), __doc__)


if __name__ == "__main__":
    main()
