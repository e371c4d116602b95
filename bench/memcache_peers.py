"""The hand-written peers ``bench_memcache.py`` measures statewire's memcached against: the
same ``get``/``set`` subset written the usual two ways, in memory.

* ``twisted``: a ``LineReceiver`` that flips ``setRawMode`` for a ``set``'s data block
  and back, as Twisted's own protocols do;
* ``asyncio``: an ``asyncio.Protocol`` scanning its own buffer for lines and blocks.

    python bench/memcache_peers.py twisted|asyncio PORT
"""

from __future__ import annotations

import asyncio
import sys

Store = dict[bytes, tuple[int, bytes]]


def _get(store: Store, keys: list[bytes]) -> bytes:
    out = []
    for key in keys:
        found = store.get(key)
        if found is not None:
            flags, value = found
            out.append(b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(value), value))
    out.append(b"END\r\n")
    return b"".join(out)


def twisted_memcache(store: Store) -> type:
    """The Twisted peer's protocol class, serving ``store``."""
    from twisted.protocols.basic import LineReceiver

    class Memcache(LineReceiver):
        delimiter = b"\r\n"
        MAX_LENGTH = 65536

        def connectionMade(self) -> None:
            self.pending: tuple[bytes, int, int, bool] | None = None
            self.block = b""

        def lineReceived(self, line: bytes) -> None:
            words = line.split()
            if not words:
                self.sendLine(b"ERROR")
            elif words[0] in (b"get", b"gets"):
                self.transport.write(_get(store, words[1:]))
            elif words[0] == b"set" and len(words) >= 5:
                self.pending = (words[1], int(words[2]), int(words[4]), words[-1] == b"noreply")
                self.block = b""
                self.setRawMode()
            else:
                self.sendLine(b"ERROR")

        def rawDataReceived(self, data: bytes) -> None:
            assert self.pending is not None
            key, flags, size, noreply = self.pending
            self.block += data
            if len(self.block) < size + 2:
                return
            value, rest = self.block[:size], self.block[size + 2 :]
            store[key] = (flags, value)
            if not noreply:
                self.sendLine(b"STORED")
            self.pending = None
            self.setLineMode(rest)

    return Memcache


def serve_twisted(port: int) -> None:
    from twisted.internet import protocol, reactor

    factory = protocol.ServerFactory.forProtocol(twisted_memcache({}))
    reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


class AsyncioMemcache(asyncio.Protocol):
    """Lines and blocks cut from one buffer, by hand."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        pos = 0
        while True:
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            words = buffer[pos:end].split()
            if words and words[0] in (b"get", b"gets"):
                out.append(_get(self.store, words[1:]))
                pos = end + 2
            elif words and words[0] == b"set" and len(words) >= 5:
                size = int(words[4])
                if len(buffer) < end + 2 + size + 2:
                    break  # the block is not all here: wait, line and all
                self.store[words[1]] = (int(words[2]), buffer[end + 2 : end + 2 + size])
                if words[-1] != b"noreply":
                    out.append(b"STORED\r\n")
                pos = end + 2 + size + 2
            else:
                out.append(b"ERROR\r\n")
                pos = end + 2
        self.buffer = buffer[pos:]
        if out:
            self.transport.write(b"".join(out))


def serve_asyncio(port: int) -> None:
    async def main() -> None:
        store: Store = {}
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: AsyncioMemcache(store), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    kind, number = sys.argv[1], int(sys.argv[2])
    {"twisted": serve_twisted, "asyncio": serve_asyncio}[kind](number)
