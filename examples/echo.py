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
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
