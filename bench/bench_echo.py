"""End-to-end line echo over loopback, and idle memory per connection, against the peers.

Each server runs in its own process; this process is the client. A round starts every
server in turn (A, B, C, ... alternated over rounds), sends 100 000 lines of 32 bytes on
each of 4 connections, all pipelined, and times until every echoed byte is back.

Servers: statewire (a ``Protocol`` that frames lines with ``statewire.framing`` and writes
each line back; writes are coalesced per read) on asyncio and on uvloop; Twisted's
``LineReceiver`` on its epoll reactor; and a hand-written asyncio protocol that writes each
read back at once, without framing (the practical limit of the loop).

Then (issue 7) a request/response protocol end to end: ``GET key`` lines answered with
``VALUE ...`` lines, served by a declared statewire protocol (a ``MachineProtocol`` whose
``TypeMachineBuilder`` machine routes ``GET`` with ``by_verb``) on asyncio and on uvloop,
by Twisted's ``LineReceiver`` on epoll and by a hand-written asyncio protocol (the limit),
pipelined and with one request in flight per connection, on 1 and 100 connections. The
servers run side by side, in their own processes, and are measured in turn (alternated
over rounds); the client runs on uvloop when it is installed. Then connections accepted
per second (each cycle: connect, one request, its answer, close with RST so that no
TIME_WAIT piles up), and the memory of one connection receiving a 100 MiB body in 64 KiB
writes (a ``LineReceiver`` switched to raw mode by a ``BODY size`` line, counting bytes):
server RSS growth, peak and final, which stays bounded by the read size, not the body.

    python bench/bench_echo.py [--rounds 3] [--lines 100000] [--memory 10000] [--quick]
        [--skip-echo] [--skip-rr] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
LINE = b"x" * 31 + b"\n"


# -- servers, each run as `python bench_echo.py serve KIND` ---------------------------------


def serve(kind: str) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    if kind == "twisted":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory
        from twisted.protocols.basic import LineReceiver

        class TwistedEcho(LineReceiver):
            delimiter = b"\n"

            def lineReceived(self, line: bytes) -> None:
                self.sendLine(line)

        sock.setblocking(False)
        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, Factory.forProtocol(TwistedEcho))
        print(f"ready {port}", flush=True)
        reactor.run()
        return
    if kind == "asyncio":

        class Raw(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[attr-defined]

        async def main() -> None:
            server = await asyncio.get_running_loop().create_server(Raw, sock=sock)
            print(f"ready {port}", flush=True)
            await server.serve_forever()

        asyncio.run(main())
        return
    from grammars import line
    from statewire import reactor
    from statewire.framing import Framer
    from statewire.protocol import Factory, Protocol

    if kind == "statewire-uvloop":
        reactor.use_uvloop()
    lines = line(b"\n")

    class Echo(Protocol):
        def connectionMade(self) -> None:
            write = self.transport.write
            self.framer = Framer(lines, lambda frame: write(frame + b"\n"))

        def dataReceived(self, data: bytes) -> None:
            self.framer.feed(data)

    sock.close()
    port_object = reactor.listenTCP(port, Factory.forProtocol(Echo), 4096, "127.0.0.1")
    port_object.factory.noisy = False
    print(f"ready {port}", flush=True)
    reactor.run()


#: the key/value store every request/response server answers from
STORE = {b"key%d" % i: b"value-%d-" % i + b"v" * 16 for i in range(1000)}


def _kv_answer(key: bytes) -> bytes:
    value = STORE.get(key)
    return b"VALUE " + value if value is not None else b"MISSING"


def serve_app(kind: str, app: str) -> None:
    """Serve ``app`` ("kv": GET key -> VALUE ...; "sink": BODY n, then n raw bytes -> OK)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    if kind == "twisted":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory
        from twisted.protocols.basic import LineReceiver

        class TwistedKV(LineReceiver):
            delimiter = b"\n"

            def lineReceived(self, line: bytes) -> None:
                verb, _, key = line.partition(b" ")
                self.sendLine(_kv_answer(key) if verb == b"GET" else b"ERROR")

        class TwistedSink(LineReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1024
            expected = received = 0

            def lineReceived(self, line: bytes) -> None:
                self.expected = int(line.split()[1])
                self.setRawMode()

            def rawDataReceived(self, data: bytes) -> None:
                self.received += len(data)
                if self.received >= self.expected:
                    self.transport.write(b"OK %d\n" % self.received)

        protocol = TwistedKV if app == "kv" else TwistedSink
        sock.setblocking(False)
        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, Factory.forProtocol(protocol))
        print(f"ready {port}", flush=True)
        reactor.run()
        return
    if kind == "asyncio":

        class HandKV(asyncio.Protocol):
            """What a careful hand-written asyncio server does: split, answer, one write."""

            buffer = b""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if self.buffer:
                    data = self.buffer + data
                lines = data.split(b"\n")
                self.buffer = lines.pop()
                out = []
                for line in lines:
                    verb, _, key = line.partition(b" ")
                    out.append(_kv_answer(key) if verb == b"GET" else b"ERROR")
                if out:
                    out.append(b"")
                    self.transport.write(b"\n".join(out))  # type: ignore[attr-defined]

        async def main() -> None:
            server = await asyncio.get_running_loop().create_server(HandKV, sock=sock)
            print(f"ready {port}", flush=True)
            await server.serve_forever()

        asyncio.run(main())
        return
    from typing import Protocol as Interface

    from automat import TypeMachineBuilder

    from grammars import line
    from statewire import basic, reactor
    from statewire.declarative import MachineProtocol
    from statewire.machine import by_verb
    from statewire.protocol import Factory

    if kind == "statewire-uvloop":
        reactor.use_uvloop()

    class Commands(Interface):
        def get(self, key: bytes) -> None: ...

    builder = TypeMachineBuilder(Commands, MachineProtocol)
    ready = builder.state("ready")

    @ready.upon(Commands.get).loop()
    def answer(machine: Commands, core: MachineProtocol, key: bytes) -> None:
        core.send(_kv_answer(key))

    class DeclaredKV(MachineProtocol):
        machine = builder.build()
        framings = {ready: line(b"\n", max_length=1024)}
        routes = {ready: by_verb({b"GET": Commands.get})}

    class Sink(basic.LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 1024
        expected = received = 0

        def lineReceived(self, line: bytes) -> None:
            self.expected = int(line.split()[1])
            self.setRawMode()

        def rawDataReceived(self, data: bytes) -> None:
            self.received += len(data)
            if self.received >= self.expected:
                self.transport.write(b"OK %d\n" % self.received)

    sock.close()
    factory = Factory.forProtocol(DeclaredKV if app == "kv" else Sink)
    port_object = reactor.listenTCP(port, factory, 4096, "127.0.0.1")
    port_object.factory.noisy = False
    print(f"ready {port}", flush=True)
    reactor.run()


SERVERS = {
    "statewire asyncio": "statewire",
    "statewire uvloop": "statewire-uvloop",
    "Twisted epoll": "twisted",
    "asyncio write-per-read": "asyncio",
}


RR_SERVERS = {
    "statewire asyncio": "statewire",
    "statewire uvloop": "statewire-uvloop",
    "Twisted epoll": "twisted",
    "asyncio hand-written": "asyncio",
}


def start(kind: str, app: str = "echo") -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, HERE, "serve", kind, app], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    words = process.stdout.readline().split()
    if not words or words[0] != "ready":
        process.kill()
        raise RuntimeError(f"{kind} server did not start")
    return process, int(words[1])


# -- the client ---------------------------------------------------------------------------


async def pipelined(port: int, lines: int, connections: int) -> float:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        payload = LINE * 1000
        expected = len(LINE) * lines

        async def send() -> None:
            for _ in range(lines // 1000):
                writer.write(payload)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        received = 0
        while received < expected:
            chunk = await reader.read(1 << 20)
            if not chunk:
                raise RuntimeError("server closed early")
            received += len(chunk)
        await sender
        writer.close()

    start_time = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return time.perf_counter() - start_time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for row in status:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise RuntimeError("no VmRSS")


def idle_memory(kind: str, count: int) -> float:
    process, port = start(kind)
    try:
        time.sleep(0.3)
        before = rss_kib(process.pid)
        sockets = []
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1.0)
        after = rss_kib(process.pid)
        for sock in sockets:
            sock.close()
        return (after - before) * 1024 / count
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--memory", type=int, default=10_000, help="idle connections (0: skip)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in SERVERS}
    for _ in range(args.rounds):
        for name, kind in SERVERS.items():
            process, port = start(kind)
            try:
                times[name].append(asyncio.run(pipelined(port, args.lines, args.connections)))
            finally:
                process.terminate()
                process.wait(10)
    total = args.lines * args.connections
    rate = {name: total / statistics.median(samples) for name, samples in times.items()}
    print(
        f"line echo: {args.connections} pipelined connections x {args.lines} lines of "
        f"{len(LINE)} bytes, {args.rounds} rounds (median, [min-max] lines/s)"
    )
    for name, samples in times.items():
        spread = f"[{total / max(samples):,.0f}-{total / min(samples):,.0f}]"
        print(f"  {name:<24}{rate[name]:>12,.0f} lines/s {spread}")
    ours = rate["statewire asyncio"]
    print(f"statewire asyncio / Twisted epoll: {ours / rate['Twisted epoll']:.2f}x")
    uv = rate["statewire uvloop"]
    print(f"statewire uvloop / Twisted epoll:  {uv / rate['Twisted epoll']:.2f}x")
    print(f"statewire asyncio / asyncio limit: {ours / rate['asyncio write-per-read']:.2f}")
    if args.memory:
        print(f"\nidle memory per connection at {args.memory} connections (server RSS growth)")
        for name in ("statewire asyncio", "statewire uvloop", "Twisted epoll"):
            print(f"  {name:<24}{idle_memory(SERVERS[name], args.memory):>8,.0f} bytes")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        if sys.argv[3:4] in ([], ["echo"]):
            serve(sys.argv[2])
        else:
            serve_app(sys.argv[2], sys.argv[3])
    else:
        main()
