"""A response body read from a file (``Response.send_file``, ASGI's
``http.response.pathsend``): opened, measured, and sent.

On statewire's own socket transport over plain TCP or a UNIX socket, a body of more than
:data:`SMALL_FILE` bytes goes from the file to the socket inside the kernel (``sendfile``:
the transport's :meth:`~statewire.runtime.socket_transport.SocketTransport.sendFile`), no
byte passing through Python, the event loop free meanwhile. Elsewhere (TLS, the asyncio
transports, a file ``sendfile`` cannot serve) it is read in pieces of :data:`PIECE` bytes
and written as any body is, each piece waiting for the client to take the last (flow
control). A smaller body is read whole and leaves with the head, in one write.

Reads are made on the event loop (``os.pread``): a file in the page cache costs
microseconds; one on a slow disk holds the loop while a piece is read (as nginx's
``sendfile`` without its thread pool does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator
from typing import Any, Protocol

#: a body this small (or smaller) is read whole and written with the head
SMALL_FILE = 64 * 1024
#: bytes read and written at a time where the kernel cannot send the file itself
PIECE = 128 * 1024


class Sink(Protocol):
    """What the sending needs of the connection."""

    #: whether writers should wait (:meth:`writable`) before writing more
    congested: bool
    #: whether the connection closes: nothing more written reaches the client
    closing: bool

    def write(self, data: bytes) -> None: ...
    async def writable(self) -> None: ...
    def send_file(self, fd: int, offset: int, count: int) -> asyncio.Future[int] | None: ...


@contextlib.contextmanager
def opened(file: Any) -> Iterator[int]:
    """The descriptor of ``file``: a path, opened (and closed after; without waiting, so
    that a FIFO is refused as not regular rather than waited on), or an open binary file
    (its ``fileno()``, left open)."""
    if isinstance(file, (str, bytes, os.PathLike)):
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    fileno = getattr(file, "fileno", None)
    if fileno is None:
        raise TypeError(f"send_file() takes a path or an open file, not {type(file).__name__}")
    yield fileno()


def body_size(fd: int, offset: int, count: int | None) -> int:
    """The bytes to send: ``count``, or all from ``offset`` to the file's end; a
    ``ValueError`` for a range the file does not hold, or a file that is not a regular
    one (its size is not known)."""
    for name, number in (("offset", offset), ("count", count)):
        if number is not None and (type(number) is not int):
            raise TypeError(f"send_file()'s {name} is an int, not {type(number).__name__}")
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise ValueError("send_file() sends a regular file")
    size = status.st_size
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} is outside the file's {size} bytes")
    if count is None:
        return size - offset
    if count < 0 or offset + count > size:
        raise ValueError(f"{count} bytes from {offset} are more than the file's {size}")
    return count


def read_whole(fd: int, offset: int, count: int) -> bytes:
    """``count`` bytes from ``offset``; ``RuntimeError`` when the file has fewer now."""
    pieces = []
    while count:
        piece = os.pread(fd, count, offset)
        if not piece:
            raise RuntimeError(f"the file ended {count} bytes short of the response's length")
        pieces.append(piece)
        offset += len(piece)
        count -= len(piece)
    return b"".join(pieces)


async def stream(sink: Sink, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``fd`` from ``offset`` as they are (the head sent before);
    the bytes sent: fewer when the connection closes first, or the file ends first."""
    sent = 0
    kernel = True
    while sent < count and not sink.closing:
        left = count - sent
        if kernel:
            sending = sink.send_file(fd, offset + sent, left)
            if sending is not None:
                taken = await sending
                sent += taken
                kernel = taken == left  # (else the file ended, or cannot be sent so)
                continue
        piece = os.pread(fd, min(left, PIECE), offset + sent)
        if not piece:
            break  # the file is shorter than it was
        sink.write(piece)
        sent += len(piece)
        if sink.congested:
            await sink.writable()
        else:
            await asyncio.sleep(0)  # (the other connections' turn)
    return sent
