"""The lingering close (statewire.runtime.lingering): a connection closed while its peer is
still sending shuts its sending side and reads and drops what comes, so the peer reads the
last replies and an end of stream instead of having its sends refused by a reset; then the
socket closes (the peer stopped sending, or the limits), also at the reactor's shutdown.
Real sockets on loopback, statewire's socket transport."""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import textwrap
import time
from typing import Any

from process_helpers import recv_exactly, running
from runtime_helpers import HOST, listen, scenario

from statewire.protocol import Factory, Protocol
from statewire.runtime import lingering

CHUNK = b"x" * 65536


class RefuseAtOnce(Protocol):
    """Answers its first read with a last reply and closes (as a server refusing a body
    it will not read does)."""

    def dataReceived(self, data: bytes) -> None:
        if not self.transport.disconnecting:
            self.transport.write(b"413 bye\r\n")
            self.transport.loseConnection()


def factory() -> Factory:
    made = Factory()
    made.protocol = RefuseAtOnce
    return made


def upload_then_read(port: int, total: int) -> tuple[int, bytes, str]:
    """Send ``total`` bytes (as a client uploading a body would), then read to the end:
    the bytes sent, what was read, and the error that stopped the upload ("" for none)."""
    sock = socket.create_connection((HOST, port))
    sock.settimeout(20)
    sent, error = 0, ""
    try:
        while sent < total:
            sent += sock.send(CHUNK)
    except OSError as exc:
        error = type(exc).__name__
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError as exc:
        error = error or type(exc).__name__
    sock.close()
    return sent, got, error


def test_a_peer_still_sending_reads_the_last_reply_and_an_end_not_a_reset() -> None:
    """Without lingering the server's close with unread bytes is a reset: the upload's
    next send fails (ConnectionResetError, BrokenPipeError) and the reply is lost."""

    async def main(reactor: Any) -> tuple[int, bytes, str]:
        port = await listen(reactor, factory())
        return await asyncio.to_thread(upload_then_read, port, 4 * 1024 * 1024)

    sent, got, error = scenario(main)
    assert (sent, got, error) == (4 * 1024 * 1024, b"413 bye\r\n", "")


def test_a_lingering_socket_closes_once_its_peer_is_quiet(monkeypatch: Any) -> None:
    """Past ``LINGER_IDLE`` without a byte the socket closes: a send after it is reset."""
    monkeypatch.setattr(lingering, "LINGER_IDLE", 0.2)

    def client(port: int) -> str:
        sock = socket.create_connection((HOST, port))
        sock.settimeout(20)
        for _ in range(32):
            sock.sendall(CHUNK)  # (read and dropped while the socket lingers)
        assert sock.recv(100) == b"413 bye\r\n"
        assert sock.recv(100) == b""  # the server's end of stream, then quiet
        deadline = time.monotonic() + 15
        error = ""
        while not error and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                sock.sendall(b"more")
            except OSError as exc:
                error = type(exc).__name__
        sock.close()
        return error

    async def main(reactor: Any) -> str:
        port = await listen(reactor, factory())
        return await asyncio.to_thread(client, port)

    assert scenario(main) in ("ConnectionResetError", "BrokenPipeError")


def unsent(sock: socket.socket) -> int:
    """Bytes ``sock`` has not had acknowledged yet (Linux's ``SIOCOUTQ``)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0])


def test_the_reactors_shutdown_closes_the_lingering_sockets() -> None:
    """A socket lingering when the reactor stops is closed with its poller (no socket
    left open past the reactor, nor a ResourceWarning)."""
    held: list[socket.socket] = []

    def client(port: int) -> None:
        sock = socket.create_connection((HOST, port))
        sock.settimeout(20)
        held.append(sock)
        for _ in range(8):  # (more than one read: the server closes with bytes unread)
            sock.sendall(CHUNK)
        assert sock.recv(100) == b"413 bye\r\n"
        deadline = time.monotonic() + 10
        while unsent(sock) and time.monotonic() < deadline:
            time.sleep(0.05)  # (until all it sent was read and dropped: lingering, quiet)

    async def main(reactor: Any) -> tuple[int, Any]:
        port = await listen(reactor, factory())
        await asyncio.to_thread(client, port)
        for _ in range(50):  # (the connection's loss reaches the reactor)
            if not reactor.connections:
                break
            await asyncio.sleep(0.01)
        return len(reactor.poller().lingering), reactor.poller()

    lingered, poller = scenario(main)
    assert lingered == 1 and not poller.lingering
    (sock,) = held
    errors = []
    for _ in range(10):  # the server's socket is closed: a send is answered by a reset
        try:
            sock.sendall(b"more")
            time.sleep(0.1)
        except OSError as exc:
            errors.append(type(exc).__name__)
            break
    sock.close()
    assert errors and errors[0] in ("ConnectionResetError", "BrokenPipeError")


def test_past_the_cap_the_oldest_lingering_socket_closes(monkeypatch: Any) -> None:
    monkeypatch.setattr(lingering, "MAX_LINGERING", 2)
    held: list[socket.socket] = []

    def client(port: int) -> None:
        sock = socket.create_connection((HOST, port))
        sock.settimeout(20)
        held.append(sock)
        for _ in range(8):  # (more than one read: it closes with bytes unread)
            sock.sendall(CHUNK)
        assert sock.recv(100) == b"413 bye\r\n"

    async def main(reactor: Any) -> list[int]:
        port = await listen(reactor, factory())
        sizes = []
        for _ in range(4):
            await asyncio.to_thread(client, port)
            for _ in range(50):
                if not reactor.connections:
                    break
                await asyncio.sleep(0.01)
            sizes.append(len(reactor.poller().lingering))
        return sizes

    try:
        assert scenario(main) == [1, 2, 2, 2]
    finally:
        for sock in held:
            sock.close()


SERVER = textwrap.dedent(
    """
    import logging, resource, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    import statewire.runtime.lingering as lingering
    lingering.LINGER_IDLE = lingering.LINGER_TIME = 60.0
    from statewire import reactor
    from statewire.protocol import Factory, Protocol

    class RefuseAtOnce(Protocol):
        def dataReceived(self, data):
            if not self.transport.disconnecting:
                self.transport.write(b"bye")
                self.transport.loseConnection()

    port = reactor.listenTCP(0, Factory.forProtocol(RefuseAtOnce), 200, "127.0.0.1")
    print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()
    """
)


def test_out_of_descriptors_the_lingering_sockets_close_first() -> None:
    """Sockets lingering take descriptors: a port that runs out closes them and accepts
    at once, rather than pausing (with 64 descriptors, 60 refused clients that keep their
    sockets open and quiet would otherwise hold them for a minute)."""
    with running("-c", SERVER) as server:
        held = []
        try:
            for _ in range(60):
                sock = socket.create_connection((HOST, server.port))
                held.append(sock)
                for _ in range(4):
                    sock.sendall(CHUNK)
                assert recv_exactly(sock, 3) == b"bye"
            late = socket.create_connection((HOST, server.port))
            held.append(late)
            late.sendall(b"x")
            assert recv_exactly(late, 3, timeout=10) == b"bye"
        finally:
            for sock in held:
                sock.close()
        out = server.stop()
    assert "cannot accept connections" not in out
