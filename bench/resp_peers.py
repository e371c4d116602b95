"""The hand-written peers ``bench_resp.py`` measures miniredis against: the commands
``redis-benchmark -t ping,set,get,incr,lpush,lrange_100,mset`` sends, in memory, written
the usual two ways.

* ``twisted``: a ``LineReceiver`` reading a request's ``*N`` and ``$len`` lines, switched
  to raw mode for each bulk string and back, as Twisted's own protocols do; inline
  commands (``PING`` typed by hand) are lines;
* ``hiredis``: an ``asyncio.Protocol`` that lets ``hiredis.Reader`` cut the requests (a
  request is an array of bulk strings, which the reply parser reads as well) and cuts the
  inline commands itself; one write per read.

Both share :func:`execute`, whose data structures mirror ``examples/miniredis.py`` (a
list per Redis list, new items inserted at its head), so the benchmark compares the
protocol stacks, not the stores.

    python bench/resp_peers.py twisted|hiredis PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

Value = bytes | list[bytes]
Store = dict[bytes, Value]

OK = b"+OK\r\n"
WRONGTYPE = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
#: an inline command longer than this is refused, as Redis refuses it (64 KiB)
MAX_INLINE = 64 * 1024


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _ping(store: Store, args: list[bytes]) -> bytes:
    return b"+PONG\r\n" if len(args) == 1 else bulk(args[1])


def _set(store: Store, args: list[bytes]) -> bytes:
    store[args[1]] = args[2]  # no options: redis-benchmark sends none
    return OK


def _get(store: Store, args: list[bytes]) -> bytes:
    value = store.get(args[1])
    if value is None:
        return b"$-1\r\n"
    if not isinstance(value, bytes):
        return WRONGTYPE
    return bulk(value)


def _incr(store: Store, args: list[bytes]) -> bytes:
    value = store.get(args[1], b"0")
    if not isinstance(value, bytes):
        return WRONGTYPE
    try:
        number = int(value) + 1
    except ValueError:
        return NOT_INTEGER
    store[args[1]] = b"%d" % number
    return b":%d\r\n" % number


def _lpush(store: Store, args: list[bytes]) -> bytes:
    items = store.setdefault(args[1], [])
    if not isinstance(items, list):
        return WRONGTYPE
    items[:0] = reversed(args[2:])
    return b":%d\r\n" % len(items)


def _lrange(store: Store, args: list[bytes]) -> bytes:
    items = store.get(args[1], [])
    if not isinstance(items, list):
        return WRONGTYPE
    try:
        start, stop = int(args[2]), int(args[3])
    except ValueError:
        return NOT_INTEGER
    count = len(items)
    start = max(start + count if start < 0 else start, 0)
    stop = stop + count if stop < 0 else stop
    chosen = items[start : stop + 1] if start <= stop else []
    return b"*%d\r\n" % len(chosen) + b"".join(map(bulk, chosen))


def _mset(store: Store, args: list[bytes]) -> bytes:
    if len(args) % 2 == 0:
        return b"-ERR wrong number of arguments for 'mset' command\r\n"
    store.update(zip(args[1::2], args[2::2], strict=True))
    return OK


#: upper-case name -> (Redis arity, handler)
COMMANDS: dict[bytes, tuple[int, Callable[[Store, list[bytes]], bytes]]] = {
    b"PING": (-1, _ping),
    b"SET": (-3, _set),
    b"GET": (2, _get),
    b"INCR": (2, _incr),
    b"LPUSH": (-3, _lpush),
    b"LRANGE": (4, _lrange),
    b"MSET": (-3, _mset),
}


def execute(store: Store, args: list[bytes]) -> bytes:
    """The reply to the request ``args`` (its name first), as bytes on the wire."""
    found = COMMANDS.get(args[0].upper())
    if found is None:
        return b"-ERR unknown command '%s'\r\n" % args[0][:128]
    arity, handler = found
    if (arity >= 0 and len(args) != arity) or len(args) < -arity:
        return b"-ERR wrong number of arguments for '%s' command\r\n" % args[0].lower()
    return handler(store, args)


# -- Twisted ---------------------------------------------------------------------------------


def serve_twisted(port: int) -> None:
    from twisted.internet import protocol, reactor
    from twisted.protocols.basic import LineReceiver

    store: Store = {}

    class Redis(LineReceiver):
        delimiter = b"\r\n"
        MAX_LENGTH = MAX_INLINE

        def connectionMade(self) -> None:
            self.out: Any = self.transport  # Twisted's interfaces are opaque to mypy
            self.expected = 0  # bulk strings still to come in this request
            self.args: list[bytes] = []
            self.size = 0  # of the bulk string being read, its CRLF included
            self.chunks: list[bytes] = []
            self.have = 0

        def refuse(self, why: bytes) -> None:
            self.out.write(b"-ERR Protocol error: %s\r\n" % why)
            self.out.loseConnection()

        def lineReceived(self, line: bytes) -> None:
            if self.expected:
                if line[:1] != b"$" or not line[1:].isdigit():
                    return self.refuse(b"expected '$'")
                self.size, self.chunks, self.have = int(line[1:]) + 2, [], 0
                self.setRawMode()  # type: ignore[no-untyped-call]
            elif line[:1] == b"*":
                if not line[1:].isdigit():
                    return self.refuse(b"invalid multibulk length")
                self.expected, self.args = int(line[1:]), []
            elif words := line.split():
                self.out.write(execute(store, words))

        def rawDataReceived(self, data: bytes) -> None:
            missing = self.size - self.have
            if len(data) < missing:
                self.chunks.append(data)
                self.have += len(data)
                return
            self.chunks.append(data[:missing])
            self.args.append(b"".join(self.chunks)[:-2])
            self.chunks = []
            self.expected -= 1
            if not self.expected:
                self.out.write(execute(store, self.args))
            self.setLineMode(data[missing:])  # type: ignore[no-untyped-call]

    loop: Any = reactor
    loop.listenTCP(port, protocol.ServerFactory.forProtocol(Redis), 4096, "127.0.0.1")
    loop.run()


# -- asyncio + hiredis -----------------------------------------------------------------------


class HiredisRedis(asyncio.Protocol):
    """Requests cut by ``hiredis.Reader``; inline commands cut by hand between them."""

    transport: asyncio.Transport

    def __init__(self, store: Store) -> None:
        import hiredis

        self.store = store
        self.reader = hiredis.Reader()
        self.errors = (hiredis.ProtocolError,)
        self.inline = b""  # a partial inline command

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        reader = self.reader
        if self.inline or (data[:1] != b"*" and not reader.has_data()):
            data = self._inline(self.inline + data, out)
        if data:
            reader.feed(data)
            try:
                # bounded: each round takes a whole request out of this read's bytes
                while (request := reader.gets()) is not False:
                    if not isinstance(request, list) or not all(
                        isinstance(word, bytes) for word in request
                    ):
                        raise self.errors[0]("expected an array of bulk strings")
                    if request:
                        out.append(execute(self.store, request))
            except self.errors as error:
                out.append(b"-ERR Protocol error: %s\r\n" % str(error).encode()[:200])
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))

    def _inline(self, buffer: bytes, out: list[bytes]) -> bytes:
        """Answer the inline commands at the head of ``buffer``; what follows them (a
        request for the reader) is returned, a partial inline command kept."""
        pos = 0
        while pos < len(buffer) and buffer[pos : pos + 1] != b"*":
            end = buffer.find(b"\n", pos)
            if end < 0:
                break
            words = buffer[pos:end].split()
            if words:
                out.append(execute(self.store, words))
            pos = end + 1
        if pos < len(buffer) and buffer[pos : pos + 1] != b"*":
            self.inline = buffer[pos:]
            if len(self.inline) > MAX_INLINE:
                out.append(b"-ERR Protocol error: too big inline request\r\n")
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
            return b""
        self.inline = b""
        return buffer[pos:]


def serve_hiredis(port: int) -> None:
    async def main() -> None:
        store: Store = {}
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: HiredisRedis(store), "127.0.0.1", port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    kind, number = sys.argv[1], int(sys.argv[2])
    {"twisted": serve_twisted, "hiredis": serve_hiredis}[kind](number)
