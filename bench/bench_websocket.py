"""WebSocket echo through ASGI: statewire's ``asgi(app)`` against uvicorn, one run.

The same ASGI application (:func:`app`: accept, then every message sent back) served by
``statewire serve bench/bench_websocket.py:asgi_factory`` (``asgi statewire``) and by
``uvicorn`` with its ``websockets`` implementation (``--ws websockets``, and
``websockets-sansio`` where this uvicorn has it), each in its own process, on asyncio and,
when uvloop is installed, on uvloop. A row ``statewire WebSocket`` serves the library's
own protocol with no ASGI (``examples/websocket_echo.py``): what the adapter costs.

The load: ``--connections`` (1 and 10) connections, each keeping ``--window`` (16) text
messages of 64 bytes in flight: the client (this process, non-blocking sockets, masked
frames built once) sends a window, reads its echoes, sends the next, for ``--seconds``.
Rounds alternate the servers; medians of the messages echoed a second and of the
server's CPU microseconds a message are printed, and the ratios of ``asgi statewire`` to
each uvicorn on the same loop. No target is set by an issue: the figures say where
statewire stands.

``--deflate``: the client offers permessage-deflate (``client_no_context_takeover``, so
one compressed frame, built once, serves for every message); every server agrees (uvicorn
by default, statewire as well) and compresses each echo, which the client counts by
frame headers without inflating. What compression costs each server.

    python bench/bench_websocket.py [--seconds 2] [--rounds 3] [--quick] [--deflate]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import selectors
import socket
import statistics
import sys
import time
import zlib
from collections.abc import Callable, MutableMapping
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_resp import HOST, cpu_seconds, free_port, served

MESSAGE = b"m" * 64
MASK = b"\x11\x22\x33\x44"
#: one masked client text frame of MESSAGE, and the server's echo of it (its length)
FRAME = (
    bytes([0x81, 0x80 | len(MESSAGE)])
    + MASK
    + bytes(b ^ MASK[i % 4] for i, b in enumerate(MESSAGE))
)
ECHO = 2 + len(MESSAGE)
KEY = base64.b64encode(b"bench-websocket!")
OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"


def compressed_frame() -> bytes:
    """MESSAGE as a masked client text frame compressed with no context (RSV1 set)."""
    compressor = zlib.compressobj(-1, zlib.DEFLATED, -15)
    payload = (compressor.compress(MESSAGE) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0xC1, 0x80 | len(payload)]) + MASK + masked


def whole_frames(data: bytes) -> tuple[int, bytes]:
    """The server frames at the start of ``data`` (count), and the bytes after them."""
    count, pos, n = 0, 0, len(data)
    while n - pos >= 2:
        length, head = data[pos + 1] & 0x7F, 2
        if length == 126:
            if n - pos < 4:
                break
            length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if n - pos < 10:
                break
            length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if n - pos < head + length:
            break
        pos += head + length
        count += 1
    return count, data[pos:]


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Accept, then send every message back as it came."""
    if scope["type"] != "websocket":
        return  # (lifespan is off; no HTTP route)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def asgi_factory() -> Any:
    """What ``statewire serve bench/bench_websocket.py:asgi_factory`` serves."""
    from statewire.protocols.asgi import asgi

    return asgi(app, lifespan="off")


def command(name: str, port: int) -> list[str]:
    uvloop = ["--uvloop"] if name.endswith("uvloop") else []
    listen = ["--listen", f"tcp:{port}:interface={HOST}"]
    if name.startswith("asgi statewire"):
        target = "bench/bench_websocket.py:asgi_factory"
        return [sys.executable, "-m", "statewire", "serve", target, *listen, *uvloop]
    if name.startswith("statewire WebSocket"):
        target = "examples/websocket_echo.py:factory"
        return [sys.executable, "-m", "statewire", "serve", target, *listen, *uvloop]
    ws = name.split()[1]
    where = ["--app-dir", "bench", "bench_websocket:app", "--host", HOST, "--port", str(port)]
    quiet = ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    loop = ["--loop", "uvloop" if uvloop else "asyncio", "--ws", ws]
    return [sys.executable, "-m", "uvicorn", *where, *loop, *quiet]


def handshake(port: int, deflate: bool = False) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: "
        + KEY
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + (OFFER if deflate else b"")
        + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise SystemExit(f"port {port} closed during the handshake")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"port {port} answered {head.splitlines()[0]!r}")
    if head.split(b"\r\n\r\n", 1)[1]:
        raise SystemExit("a frame before the first message")
    if deflate and b"permessage-deflate" not in head.lower():
        raise SystemExit(f"port {port} did not agree on permessage-deflate")
    return sock


def load(port: int, connections: int, window: int, seconds: float, deflate: bool) -> int:
    """Messages echoed in ``seconds`` over ``connections``, ``window`` in flight each: the
    echoes counted by their bytes, or (``deflate``: compressed both ways, each echo's
    length its own) by their frames."""
    batch = (compressed_frame() if deflate else FRAME) * window
    expected = window if deflate else ECHO * window
    socks = [handshake(port, deflate) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[int, bytes]] = {}
    for sock in socks:
        sock.setblocking(False)
        sock.sendall(batch)
        pending[sock] = (expected, b"")
        selector.register(sock, selectors.EVENT_READ)
    echoed = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for key, _ in selector.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(1 << 18)
                if not data:
                    raise SystemExit("the server closed a connection")
                left, rest = pending[sock]
                if deflate:
                    count, rest = whole_frames(rest + data)
                else:
                    count = len(data)
                left -= count
                while left <= 0:
                    echoed += window
                    sock.sendall(batch)
                    left += expected
                pending[sock] = (left, rest)
    finally:
        for sock in socks:
            selector.unregister(sock)
            sock.close()
    return echoed


def servers() -> list[str]:
    """The rows: statewire's, and uvicorn's WebSocket implementations installed here."""
    loops = [""]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append(" uvloop")
    names = []
    for loop in loops:
        names += [f"asgi statewire{loop}", f"statewire WebSocket{loop}"]
        if importlib.util.find_spec("uvicorn") is not None:
            names.append(f"uvicorn websockets{loop}")
            if importlib.util.find_spec("uvicorn.protocols.websockets.websockets_sansio_impl"):
                names.append(f"uvicorn websockets-sansio{loop}")
    return names


def measure(
    name: str, connections: int, window: int, seconds: float, deflate: bool = False
) -> tuple[float, float]:
    """(messages a second, server CPU microseconds a message) for one round."""
    port = free_port()
    with served(command(name, port), port) as (_, pid):
        load(port, connections, window, 0.2, deflate)  # warm
        before, start = cpu_seconds(pid), time.monotonic()
        echoed = load(port, connections, window, seconds, deflate)
        elapsed, cpu = time.monotonic() - start, cpu_seconds(pid) - before
    return echoed / elapsed, cpu * 1e6 / max(1, echoed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--connections", default="1,10")
    parser.add_argument("--quick", action="store_true", help="1 round of 0.5 s")
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate both ways")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 0.5, 1
    names = servers()
    counts = [int(n) for n in args.connections.split(",")]
    compressed = ", permessage-deflate" if args.deflate else ""
    print(
        f"WebSocket echo of 64-byte text messages{compressed}, {args.window} in flight a "
        f"connection, {args.seconds:g} s a load, {args.rounds} alternated rounds (medians)"
    )
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for connections in counts:
            for name in names:
                key = (name, connections)
                results.setdefault(key, []).append(
                    measure(name, connections, args.window, args.seconds, args.deflate)
                )
    median: Callable[[list[float]], float] = statistics.median
    rate = {key: median([r for r, _ in rounds]) for key, rounds in results.items()}
    for connections in counts:
        print(f"\n{connections} connection(s)")
        print(f"{'server':28} {'messages/s':>12} {'CPU us/msg':>11}")
        for name in names:
            cpu = median([c for _, c in results[(name, connections)]])
            print(f"{name:28} {rate[(name, connections)]:12,.0f} {cpu:11.1f}")
        for name in names:
            if not name.startswith("uvicorn"):
                continue
            ours = "asgi statewire" + (" uvloop" if name.endswith("uvloop") else "")
            ratio = rate[(ours, connections)] / rate[(name, connections)]
            label = "websocket deflate" if args.deflate else "websocket"
            print(f"{label}: {connections} conn: {ours} / {name}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
