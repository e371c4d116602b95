"""PROXY header cost per connection, in process: v1 and v2 against no PROXY protocol.

Each contender serves the same connections in memory: build the protocol, connect it to an
in-memory transport, deliver the first read (the header, if any, and a 16-byte request);
the wrapped protocol asks ``getPeer()`` as a real one would. Contenders alternate round by
round; the table shows the median time per connection, the spread (min-max over rounds),
and the overhead against no PROXY protocol. "parse" is ``grammars.proxy.scan`` alone;
"+ timer" adds the header timeout on a real reactor (one timer per factory: each
connection joins and leaves a generation set). "v2 crc32c+id" is the header HAProxy sends
with ``proxy-v2-options crc32c,unique-id`` (as in tests/test_proxy_server.py): its CRC32C
is checked. A calibration line (``int(b"255")``) says how fast this machine runs now. On a
shared machine the medians move with the neighbours' load: the overhead is also given
between the fastest rounds ("min"), the steadier estimate of the cost itself.

    python bench/bench_proxy.py [--connections N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from grammars.proxy import PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, ProxyHeader, encode, scan
from statewire import reactor as shared_reactor
from statewire.address import Address, IPv4Address
from statewire.protocol import Factory, Protocol
from statewire.proxy import ProxyProtocolFactory

REQUEST = b"GET /0123456789\n"
PEER = IPv4Address("TCP", "10.0.0.2", 40000)
HOST = IPv4Address("TCP", "10.0.0.1", 8007)
V1 = encode(ProxyHeader.tcp(("203.0.113.7", 4242), ("198.51.100.1", 443), 1))
V2 = encode(ProxyHeader.tcp(("203.0.113.7", 4242), ("198.51.100.1", 443), 2))
#: what HAProxy sends with ``proxy-v2-options crc32c,unique-id`` (the CRC is computed by
#: ``encode``; the unique id has the length of tests/test_proxy_server.py's format)
V2_CRC = encode(
    ProxyHeader.tcp(
        ("203.0.113.7", 4242),
        ("198.51.100.1", 443),
        2,
        tlvs=[
            (PP2_TYPE_CRC32C, bytes(4)),
            (PP2_TYPE_UNIQUE_ID, b"CB00710D:1092_C6336401:01BB_692D5A40_0000:5F3A"),
        ],
    )
)


class _Transport:
    """The least a connection needs: addresses, writes, closing."""

    disconnecting = False

    def getPeer(self) -> Address:
        return PEER

    def getHost(self) -> Address:
        return HOST

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        raise AssertionError("the benchmark's headers are well formed")


class _App(Protocol):
    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        pass


def _serve(factory: Any, first_read: bytes) -> Callable[[int], None]:
    def run(connections: int) -> None:
        build = factory.buildProtocol
        for _ in range(connections):
            protocol = build(PEER)
            protocol.makeConnection(_Transport())
            protocol.dataReceived(first_read)

    return run


def _parse(data: bytes) -> Callable[[int], None]:
    def run(connections: int) -> None:
        for _ in range(connections):
            scan(data)

    return run


def _calibrate(connections: int) -> None:
    for _ in range(connections):
        int(b"255")


def _time(run: Callable[[int], None], connections: int) -> float:
    start = time.perf_counter()
    run(connections)
    return (time.perf_counter() - start) / connections * 1e9


def _fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):8.0f} [{min(samples):.0f}-{max(samples):.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2000 connections, 3 rounds")
    options = parser.parse_args()
    connections, rounds = options.connections, options.rounds
    if options.quick:
        connections, rounds = 2000, 3

    reactor = shared_reactor  # its clock; not run: the one header timer never fires
    app = Factory.forProtocol(_App)
    cases: list[tuple[str, Callable[[int], None]]] = [
        ("no PROXY", _serve(app, REQUEST)),
        ("v1", _serve(ProxyProtocolFactory(app, timeout=None), V1 + REQUEST)),
        ("v2", _serve(ProxyProtocolFactory(app, timeout=None), V2 + REQUEST)),
        ("v1 + timer", _serve(ProxyProtocolFactory(app, clock=reactor), V1 + REQUEST)),
        ("v2 + timer", _serve(ProxyProtocolFactory(app, clock=reactor), V2 + REQUEST)),
        ("v2 crc32c+id", _serve(ProxyProtocolFactory(app, timeout=None), V2_CRC + REQUEST)),
        ("parse v1", _parse(V1 + REQUEST)),
        ("parse v2", _parse(V2 + REQUEST)),
        ("parse v2 crc", _parse(V2_CRC + REQUEST)),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(rounds):
        for name, run in cases:
            samples[name].append(_time(run, connections))
    calibration = min(_time(_calibrate, connections) for _ in range(3))
    print(f"{connections} connections x {rounds} rounds, median ns/connection [min-max]")
    print(f"calibration: int(b'255') in a loop = {calibration:.0f} ns")
    base = statistics.median(samples["no PROXY"])
    fastest = min(samples["no PROXY"])
    print(f"{'contender':<14}{'ns/connection':>24}{'overhead':>12}{'(min)':>10}")
    for name, _ in cases:
        median = statistics.median(samples[name])
        overhead = ""
        if not name.startswith(("no", "parse")):
            overhead = f"{median - base:+9.0f} ns{min(samples[name]) - fastest:+8.0f} ns"
        print(f"{name:<14}{_fmt(samples[name]):>24}{overhead:>22}")


if __name__ == "__main__":
    main()
