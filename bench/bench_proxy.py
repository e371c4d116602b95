"""PROXY header cost per connection: v1 and v2 against no PROXY protocol, in process and
over loopback.

In process, each contender serves the same connections in memory: build the protocol,
connect it to an in-memory transport that works as statewire's transports do (its state in
slots; reads delivered to its ``protocol`` attribute; the hand-over, ``handOver`` and
``relay``, as ``statewire.runtime.connection.Connection`` does it from inside a read), then
deliver the first read (the header, if any, and a 16-byte request) and a second read
(another request), each echoed. The wrapped protocol asks
``getPeer()`` as a real one would: statewire's transports make a new address object at
each call, and so does this one; behind a proxy, the address made from the header is
given. (The address ``buildProtocol`` gets is made once for all: the runtime makes it for
both.) "+ timer" adds the header timeout on a real reactor (one timer per factory: each
connection joins and leaves a generation set); "+ trusted" names the proxies' network, as
a port open to more than the proxy must. "v2 crc32c+id" is the header HAProxy sends
with ``proxy-v2-options crc32c,unique-id`` (as in tests/test_proxy_server.py): its CRC32C
is checked, in C when google-crc32c is installed (the first line says which). "parse" is
the header's reading alone: ``grammars.proxy.scan`` (every header, the grammar's own
reading) and ``statewire.proxy.quick_scan`` (the common headers: the reading a connection runs,
inline in ``ProxyRelay.dataReceived``).
Times are this thread's CPU time: what the neighbours' processes take of the cores is not
counted (what they do to the caches still is).

Over loopback (``--loopback``), a reactor in this process serves each contender on its own
port; a client in a thread opens connections one after another, each sending its header
and a line and reading the line back. What counts is the server's CPU time per connection
(the loop's thread: accept, read, write, close, and the header); the client's wall-clock
time is shown too, but it moves with how the two threads hand the GIL over.

The machine is shared: contenders alternate in short rounds, and what counts is the
*fastest* round of each (the least disturbed): the overhead column is the fastest round
less no PROXY's fastest; the medians (with min-max) show how much neighbours moved them.
A calibration line (``int(b"255")``) says how fast this machine runs now. ``--against
FILE`` also times another ``statewire/proxy.py`` (say, ``git show HEAD:statewire/proxy.py
> /tmp/old_proxy.py``) side by side, in the same rounds.

    python bench/bench_proxy.py [--connections N] [--rounds R] [--quick] [--loopback]
        [--against FILE] [--fixed-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import socket
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from grammars.proxy import PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, ProxyHeader, encode, scan
from statewire import proxy as proxy_module
from statewire import reactor as shared_reactor
from statewire.address import Address, IPv4Address, from_sockaddr
from statewire.protocol import Factory, Protocol

T = TypeVar("T")

REQUEST = b"GET /0123456789\n"
PEER_SOCKADDR, HOST_SOCKADDR = ("10.0.0.2", 40000), ("10.0.0.1", 8007)
PEER = IPv4Address("TCP", *PEER_SOCKADDR)
#: the proxies' network, as a port would name it (``trusted=``)
TRUSTED = "10.0.0.0/8"
#: whether the in-memory transport's getPeer() returns one address made once
FIXED_PEER = False
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
    """The least a connection needs: addresses, writes, closing, the hand-over. Like
    statewire's transports (``statewire.runtime.connection.Connection``), it delivers
    reads to its ``protocol``, makes the address objects from the socket's addresses when
    asked (``from_sockaddr``) unless a ``relay`` gives them, and hands the connection
    over (``handOver``, as called from inside a read: no guard of its own)."""

    # its state in slots set at creation, as a Connection's (an attribute read from the
    # class through an instance takes the interpreter's slow road)
    __slots__ = ("_closed", "_held", "_in_callback", "_read_paused", "disconnecting",
                 "protocol", "relay")  # fmt: skip

    def __init__(self) -> None:
        self.protocol: Any = None
        self.relay: Any = None
        self.disconnecting = self._closed = self._read_paused = False
        self._in_callback = True  # handOver is called from inside a read here
        self._held = b""

    def getPeer(self) -> Address:
        relay = self.relay
        if relay is not None:
            peer: Address | None = relay.peer
            if peer is not None:
                return peer
        return from_sockaddr(False, PEER_SOCKADDR)

    def handOver(self, protocol: Any, data: bytes = b"") -> None:
        if not self._in_callback:
            raise AssertionError("the benchmark hands over from inside a read")
        self.protocol = protocol
        if data:
            self._held += data
        protocol.makeConnection(self)
        held = self._held
        if held and not (self._read_paused or self._closed or self.disconnecting):
            self._held = b""
            protocol.dataReceived(held)

    def getHost(self) -> Address:
        return from_sockaddr(False, HOST_SOCKADDR)

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        raise AssertionError("the benchmark's headers are well formed")


class _FixedPeer(_Transport):
    """``--fixed-peer``: ``getPeer()`` returns one address made once (as this benchmark
    did before; it leaves out what the address costs the direct connection)."""

    __slots__ = ()

    def getPeer(self) -> Address:
        relay = self.relay
        if relay is not None:
            peer: Address | None = relay.peer
            if peer is not None:
                return peer
        return PEER


class _App(Protocol):
    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _serve(factory: Any, first_read: bytes) -> Callable[[int], None]:
    def run(connections: int) -> None:
        build = factory.buildProtocol
        kind = _FixedPeer if FIXED_PEER else _Transport
        for _ in range(connections):
            transport = kind()
            protocol = transport.protocol = build(PEER)
            protocol.makeConnection(transport)
            transport.protocol.dataReceived(first_read)
            transport.protocol.dataReceived(REQUEST)

    return run


def _parse(reader: Callable[[bytes], Any], data: bytes) -> Callable[[int], None]:
    def run(connections: int) -> None:
        for _ in range(connections):
            reader(data)

    return run


def _calibrate(connections: int) -> None:
    for _ in range(connections):
        int(b"255")


def _time(run: Callable[[int], None], connections: int) -> float:
    """ns per connection, in this thread's CPU time: the time the neighbours' processes
    hold the cores is not counted (their effect on the caches still is)."""
    start = time.thread_time()
    run(connections)
    return (time.thread_time() - start) / connections * 1e9


def _rotated(cases: list[T], turn: int) -> list[T]:
    """``cases``, starting from a different one each round: no contender always runs
    right after the same other (or, over loopback, with the same number of the client's
    closed connections still in TIME_WAIT)."""
    turn %= len(cases)
    return cases[turn:] + cases[:turn]


def _load(path: str) -> Any:
    """The module in ``path``: another statewire/proxy.py, timed beside this one."""
    spec = importlib.util.spec_from_file_location("proxy_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(title: str, samples: dict[str, list[float]], base: str, unit: str) -> None:
    print(title)
    print(f"{'contender':<31}{'fastest':>10}{'overhead':>12}   median [min-max]")
    fastest = min(samples[base])
    for name, values in samples.items():
        overhead = ""
        if name != base and not name.startswith("parse"):
            digits = 1 if unit == "us" else 0
            overhead = f"{min(values) - fastest:+.{digits}f}"
        median = statistics.median(values)
        spread = f"{median:.1f} [{min(values):.1f}-{max(values):.1f}]"
        print(f"{name:<31}{min(values):>10.1f}{overhead:>12}   {spread}")


def in_process(connections: int, rounds: int, against: Any) -> None:
    reactor = shared_reactor  # its clock; not run: the one header timer never fires
    app = Factory.forProtocol(_App)
    cases: list[tuple[str, Callable[[int], None]]] = [("no PROXY", _serve(app, REQUEST))]
    modules = [("", proxy_module)] + ([(" (against)", against)] if against else [])
    for suffix, module in modules:
        factory = module.ProxyProtocolFactory
        deployed = partial(factory, clock=reactor, trusted=[TRUSTED])
        cases += [
            ("v1" + suffix, _serve(factory(app, timeout=None), V1 + REQUEST)),
            ("v2" + suffix, _serve(factory(app, timeout=None), V2 + REQUEST)),
            ("v1 + timer" + suffix, _serve(factory(app, clock=reactor), V1 + REQUEST)),
            ("v2 + timer" + suffix, _serve(factory(app, clock=reactor), V2 + REQUEST)),
            ("v2 + timer + trusted" + suffix, _serve(deployed(app), V2 + REQUEST)),
            ("v2 crc32c+id" + suffix, _serve(factory(app, timeout=None), V2_CRC + REQUEST)),
        ]
    for name, data in (("v1", V1), ("v2", V2), ("v2 crc", V2_CRC)):
        cases.append((f"parse {name}: scan", _parse(scan, data + REQUEST)))
        cases.append((f"parse {name}: quick", _parse(proxy_module.quick_scan, data + REQUEST)))
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for turn in range(rounds):
        for name, run in _rotated(cases, turn):
            samples[name].append(_time(run, connections))
    calibration = min(_time(_calibrate, connections) for _ in range(rounds))
    crc = "C (google-crc32c)" if proxy_module.CRC32C_IN_C else "pure Python"
    _report(
        f"in process: {connections} connections x {rounds} rounds, ns per connection; "
        f"calibration int(b'255') = {calibration:.0f} ns; CRC32C in {crc}",
        samples,
        "no PROXY",
        "ns",
    )


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _client(port: int, first: bytes, connections: int) -> float:
    """Seconds for ``connections`` connections one after another, each sending ``first``
    and reading the request back."""
    start = time.perf_counter()
    for _ in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(first)
            got = b""
            while len(got) < len(REQUEST):
                more = sock.recv(64)
                if not more:
                    raise AssertionError("the server closed the connection")
                got += more
    return time.perf_counter() - start


def loopback(connections: int, rounds: int, against: Any) -> None:
    from statewire._reactor import Reactor

    async def serve() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        reactor = Reactor()
        app = Factory.forProtocol(_Echo)
        cases: list[tuple[str, Any, bytes]] = [("no PROXY", app, REQUEST)]
        modules = [("", proxy_module)] + ([(" (against)", against)] if against else [])
        for suffix, module in modules:
            factory = module.ProxyProtocolFactory
            cases += [
                ("v1" + suffix, factory(app), V1 + REQUEST),
                ("v2" + suffix, factory(app), V2 + REQUEST),
                ("v2 crc32c+id" + suffix, factory(app), V2_CRC + REQUEST),
            ]
        ports = []
        for _, factory, _ in cases:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
            await port.ready
            ports.append(port.getHost().port)
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        wall: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        try:
            for turn in range(rounds):
                served = list(zip(cases, ports, strict=True))
                for (name, _, first), port in _rotated(served, turn):
                    start = time.thread_time()  # this thread runs the server's loop
                    seconds = await asyncio.to_thread(_client, port, first, connections)
                    cpu[name].append((time.thread_time() - start) / connections * 1e6)
                    wall[name].append(seconds / connections * 1e6)
        finally:
            await reactor.shutdown()
        return cpu, wall

    cpu, wall = asyncio.run(serve())
    what = f"{connections} connections x {rounds} rounds (connect, header and a line, echo, close)"
    _report(f"loopback, the server's CPU time, us per connection: {what}", cpu, "no PROXY", "us")
    print()
    _report(
        "loopback, the client's wall-clock time, us per connection (the client is a thread of "
        "this process: the GIL's hand-overs weigh on it as much as the server's work)",
        wall,
        "no PROXY",
        "us",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="500 connections, 5 rounds")
    parser.add_argument("--loopback", action="store_true", help="also over loopback sockets")
    parser.add_argument("--loopback-connections", type=int, default=1000)
    parser.add_argument("--against", metavar="FILE", help="another statewire/proxy.py to time")
    parser.add_argument(
        "--fixed-peer", action="store_true", help="getPeer() returns one address made once"
    )
    options = parser.parse_args()
    global FIXED_PEER
    FIXED_PEER = options.fixed_peer
    connections, rounds = options.connections, options.rounds
    if options.quick:
        connections, rounds = 500, 5
    against = _load(options.against) if options.against else None
    gc.collect()
    in_process(connections, rounds, against)
    if options.loopback:
        print()
        loopback(options.loopback_connections, max(3, rounds // 3), against)


if __name__ == "__main__":
    main()
