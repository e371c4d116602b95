"""End-to-end line echo over loopback, and idle memory per connection, against the peers.

Each server runs in its own process; this process is the client. A round starts every
server in turn (A, B, C, ... alternated over rounds), sends 100 000 lines of 32 bytes on
each of 4 connections, all pipelined, and times until every echoed byte is back.

Servers: statewire's ``LineReceiver`` (``statewire.basic``; each line sent back with
``sendLine``, writes coalesced per read) on asyncio and on uvloop; Twisted's
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
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
LINE = b"x" * 31 + b"\n"


def _serve_asyncio(protocol: type[asyncio.Protocol], sock: socket.socket, port: int) -> None:
    """Serve ``protocol`` on ``sock`` with plain asyncio until killed."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(protocol, sock=sock)
        print(f"ready {port}", flush=True)
        await server.serve_forever()

    asyncio.run(main())


# -- servers, each run as `python bench_echo.py serve KIND` ---------------------------------


def _listening() -> tuple[socket.socket, int]:
    """A socket listening on a free loopback port, and the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock, sock.getsockname()[1]


def _serve_twisted(protocol: type, sock: socket.socket, port: int) -> None:
    """Serve ``protocol`` on ``sock`` with Twisted's epoll reactor until killed."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    sock.setblocking(False)
    reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, Factory.forProtocol(protocol))
    print(f"ready {port}", flush=True)
    reactor.run()


def _serve_statewire(kind: str, protocol: type, sock: socket.socket, port: int) -> None:
    """Serve ``protocol`` on ``port`` with statewire (on uvloop for "statewire-uvloop")."""
    from statewire import reactor
    from statewire.protocol import Factory

    if kind == "statewire-uvloop":
        reactor.use_uvloop()
    sock.close()
    port_object = reactor.listenTCP(port, Factory.forProtocol(protocol), 4096, "127.0.0.1")
    port_object.factory.noisy = False
    print(f"ready {port}", flush=True)
    reactor.run()


def serve(kind: str) -> None:
    sock, port = _listening()
    if kind == "twisted":
        from twisted.protocols.basic import LineReceiver

        class TwistedEcho(LineReceiver):
            delimiter = b"\n"

            def lineReceived(self, line: bytes) -> None:
                self.sendLine(line)

        _serve_twisted(TwistedEcho, sock, port)
        return
    if kind == "asyncio":

        class Raw(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[attr-defined]

        _serve_asyncio(Raw, sock, port)
        return
    from statewire import basic

    class Echo(basic.LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            self.sendLine(line)

    _serve_statewire(kind, Echo, sock, port)


#: the key/value store every request/response server answers from
STORE = {b"key%d" % i: b"value-%d-" % i + b"v" * 16 for i in range(1000)}


def _kv_answer(key: bytes) -> bytes:
    value = STORE.get(key)
    return b"VALUE " + value if value is not None else b"MISSING"


def serve_app(kind: str, app: str) -> None:
    """Serve ``app`` ("kv": GET key -> VALUE ...; "sink": BODY n, then n raw bytes -> OK)."""
    sock, port = _listening()
    if kind == "twisted":
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

        _serve_twisted(TwistedKV if app == "kv" else TwistedSink, sock, port)
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

        _serve_asyncio(HandKV, sock, port)
        return
    from typing import Protocol as Interface

    from automat import TypeMachineBuilder

    from grammars import line
    from statewire import basic
    from statewire.declarative import MachineProtocol
    from statewire.machine import by_verb

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

    _serve_statewire(kind, DeclaredKV if app == "kv" else Sink, sock, port)


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


def run_echo(args: argparse.Namespace, results: dict) -> None:
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
    results["echo"] = rate
    ours = rate["statewire asyncio"]
    print(f"statewire asyncio / Twisted epoll: {ours / rate['Twisted epoll']:.2f}x")
    uv = rate["statewire uvloop"]
    print(f"statewire uvloop / Twisted epoll:  {uv / rate['Twisted epoll']:.2f}x")
    print(f"statewire asyncio / asyncio limit: {ours / rate['asyncio write-per-read']:.2f}")
    if args.memory:
        print(f"\nidle memory per connection at {args.memory} connections (server RSS growth)")
        idle = results.setdefault("idle_bytes", {})
        for name in ("statewire asyncio", "statewire uvloop", "Twisted epoll"):
            idle[name] = idle_memory(SERVERS[name], args.memory)
            print(f"  {name:<24}{idle[name]:>8,.0f} bytes")


# -- request/response, accept rate, body memory --------------------------------------------

REQUESTS = [b"GET key%d\n" % (i % 1000) for i in range(1000)]
BATCH = b"".join(REQUESTS)


class _Client(asyncio.Protocol):
    """A request/response client: ``go()`` sends, ``done`` resolves after every answer."""

    transport: asyncio.Transport

    def __init__(self, requests: int, pipelined: bool, done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.pipelined = pipelined
        self.answers = 0
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def go(self) -> None:
        if self.pipelined:
            full, rest = divmod(self.requests, len(REQUESTS))
            self.transport.write(BATCH * full + b"".join(REQUESTS[:rest]))
        else:
            self.transport.write(REQUESTS[0])

    def data_received(self, data: bytes) -> None:
        self.answers += data.count(b"\n")
        if self.answers >= self.requests:
            if not self.done.done():
                self.done.set_result(None)
        elif not self.pipelined:
            self.transport.write(REQUESTS[self.answers % len(REQUESTS)])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError("server closed early"))


async def request_response(port: int, total: int, connections: int, pipelined: bool) -> float:
    """Seconds for ``total`` requests spread over ``connections`` (connecting not timed)."""
    loop = asyncio.get_running_loop()
    clients = []
    for i in range(connections):
        share = total // connections + (i < total % connections)
        done: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(
            lambda share=share, done=done: _Client(share, pipelined, done), "127.0.0.1", port
        )
        clients.append(client)
    start_time = time.perf_counter()
    for client in clients:
        client.go()
    await asyncio.gather(*(client.done for client in clients))
    elapsed = time.perf_counter() - start_time
    for client in clients:
        client.transport.close()
    return elapsed


def client_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def check_answer(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET key7\nGET nokey\n")
        data = b""
        while data.count(b"\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    if data != b"VALUE " + STORE[b"key7"] + b"\nMISSING\n":
        raise RuntimeError(f"unexpected answer {data!r}")


LINGER_RST = struct.pack("ii", 1, 0)


def accept_cycles(port: int, count: int) -> float:
    """Seconds for ``count`` sequential cycles: connect, GET, answer, close (RST)."""
    address = ("127.0.0.1", port)
    start_time = time.perf_counter()
    for _ in range(count):
        sock = socket.create_connection(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        sock.sendall(b"GET key1\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("server closed early")
            data += chunk
        sock.close()
    return time.perf_counter() - start_time


def peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for row in status:
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    raise RuntimeError("no VmHWM")


def body_memory(kind: str, size: int, write: int = 64 * 1024) -> tuple[int, int]:
    """Server (peak, final) RSS growth in KiB while one connection receives ``size`` bytes."""
    process, port = start(kind, "sink")
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"BODY %d\n" % size)
            time.sleep(0.3)
            before = rss_kib(process.pid)
            try:  # reset the peak RSS (VmHWM) to the current RSS
                with open(f"/proc/{process.pid}/clear_refs", "w") as refs:
                    refs.write("5")
                peak_before = before
            except OSError:
                peak_before = peak_kib(process.pid)
            block = b"b" * write
            sent = 0
            while sent < size:
                sock.sendall(block[: size - sent])
                sent += min(write, size - sent)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("server closed early")
                data += chunk
            if data != b"OK %d\n" % size:
                raise RuntimeError(f"unexpected answer {data!r}")
            after = rss_kib(process.pid)
            peak = peak_kib(process.pid)
        return max(0, peak - peak_before), after - before
    finally:
        process.terminate()
        process.wait(10)


def rr_scenarios(quick: bool) -> list[tuple[str, int, int, bool]]:
    """(name, requests, connections, pipelined)."""
    scale = 5 if quick else 1
    return [
        ("pipelined, 1 conn", 100_000 // scale, 1, True),
        ("pipelined, 100 conns", 100_000 // scale, 100, True),
        ("1 in flight, 1 conn", 5_000 // scale, 1, False),
        ("1 in flight, 100 conns", 50_000 // scale, 100, False),
    ]


def _spread(total: int, samples: list[float]) -> str:
    return f"[{total / max(samples):,.0f}-{total / min(samples):,.0f}]"


def run_request_response(rounds: int, quick: bool, accepts: int, results: dict) -> None:
    """Every scenario against every server (all started once, measured in turn)."""
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    loop = client_loop()
    try:
        for name, kind in RR_SERVERS.items():
            servers[name] = start(kind, "kv")
        for _, port in servers.values():
            check_answer(port)
        scenarios = rr_scenarios(quick)
        times = {(s[0], name): [] for s in scenarios for name in servers}
        accept_times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(rounds):
            for scenario, total, connections, pipelined in scenarios:
                for name, (_, port) in servers.items():
                    elapsed = loop.run_until_complete(
                        request_response(port, total, connections, pipelined)
                    )
                    times[scenario, name].append(elapsed)
            if accepts:
                for name, (_, port) in servers.items():
                    accept_times[name].append(accept_cycles(port, accepts))
    finally:
        loop.close()
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
    client = type(loop).__module__.split(".")[0]
    print(
        f"\nrequest/response: GET key -> VALUE ... lines, {rounds} rounds, client on {client} "
        "(median requests/s [min-max])"
    )
    rr = results.setdefault("request_response", {})
    for scenario, total, _, _ in scenarios:
        print(f"  {scenario} ({total:,} requests)")
        rates = {}
        for name in servers:
            samples = times[scenario, name]
            rates[name] = total / statistics.median(samples)
            print(f"    {name:<24}{rates[name]:>12,.0f} req/s {_spread(total, samples)}")
        rr[scenario] = rates
        print(
            f"    statewire asyncio / Twisted: {_ratio(rates, 'statewire asyncio')}, "
            f"uvloop / Twisted: {_ratio(rates, 'statewire uvloop')}, "
            f"asyncio / limit: "
            f"{rates['statewire asyncio'] / rates['asyncio hand-written']:.2f}"
        )
    if accepts:
        print(
            f"\nconnections accepted per second: {accepts} sequential cycles of connect, "
            f"GET, answer, close (RST), {rounds} rounds (median [min-max])"
        )
        rates = {}
        for name, samples in accept_times.items():
            rates[name] = accepts / statistics.median(samples)
            print(f"  {name:<24}{rates[name]:>12,.0f} conn/s {_spread(accepts, samples)}")
        results["accepts"] = rates
        print(
            f"statewire asyncio / Twisted epoll: {_ratio(rates, 'statewire asyncio')}; "
            f"uvloop / Twisted epoll: {_ratio(rates, 'statewire uvloop')}"
        )


def _ratio(rates: dict[str, float], name: str) -> str:
    return f"{rates[name] / rates['Twisted epoll']:.2f}x"


def run_body_memory(size: int, results: dict) -> None:
    print(
        f"\nmemory of one connection receiving a {size / (1 << 20):g} MiB body in 64 KiB writes "
        "(LineReceiver in raw mode, counting bytes): server RSS growth"
    )
    memory = results.setdefault("body_memory_kib", {})
    for name in ("statewire asyncio", "statewire uvloop", "Twisted epoll"):
        peak, final = body_memory(SERVERS[name], size)
        memory[name] = {"peak": peak, "final": final}
        print(f"  {name:<24}peak {peak:>8,} KiB   after {final:>8,} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--memory", type=int, default=10_000, help="idle connections (0: skip)")
    parser.add_argument("--accepts", type=int, default=2000, help="accept cycles (0: skip)")
    parser.add_argument("--body", type=int, default=100, help="body MiB (0: skip)")
    parser.add_argument("--quick", action="store_true", help="fewer lines, requests, cycles")
    parser.add_argument("--skip-echo", action="store_true", help="only the issue 7 parts")
    parser.add_argument("--skip-rr", action="store_true", help="only the line echo parts")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.memory = args.lines // 5, args.memory // 5
        args.accepts //= 4
    results: dict = {}
    if not args.skip_echo:
        run_echo(args, results)
    if not args.skip_rr:
        run_request_response(args.rounds, args.quick, args.accepts, results)
        if args.body:
            run_body_memory(args.body << 20, results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        if sys.argv[3:4] in ([], ["echo"]):
            serve(sys.argv[2])
        else:
            serve_app(sys.argv[2], sys.argv[3])
    else:
        main()
