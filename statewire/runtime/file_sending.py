"""A file sent straight from the kernel: the state of one
:meth:`~statewire.runtime.socket_transport.SocketTransport.sendFile`, and its steps.

Each step hands the socket what it takes of the file with ``os.sendfile`` (no byte passes
through Python), in calls of at most :data:`PIECE` bytes, until the socket is full, the
file ends, or :data:`STEP` bytes went in this step: a fast reader does not hold the event
loop, the poller calls the transport again while the socket stays writable.
"""

from __future__ import annotations

import asyncio
import errno
import os

#: bytes asked of one ``os.sendfile`` call
PIECE = 512 * 1024
#: bytes one step sends at most before the loop runs other work
STEP = 2 << 20
#: errors saying ``sendfile`` cannot serve this file (a file system or a kind of file it
#: does not support): the caller writes the rest itself
UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EOVERFLOW, errno.ENOTSUP}
#: errors of the file, not of the socket (sendfile(2)): the caller is told; any other is
#: the socket's, and the connection is lost
FILE_ERRORS = {
    errno.EBADF,
    errno.EIO,
    errno.EINVAL,
    errno.ENOMEM,
    errno.EOVERFLOW,
    errno.ESPIPE,
    errno.EFAULT,
    errno.EISDIR,
    errno.ENXIO,
}


class FileSend:
    """``left`` bytes of the open file ``fd`` to send from ``offset``; ``future`` is
    given the bytes sent once done (fewer when the file ended first, ``sendfile`` could
    not serve it, or the connection closed), or the error reading the file.

    The sending holds a descriptor of its own (a duplicate of ``fd``): the caller closing
    its file, even before the future is done, never has another file's bytes sent in its
    place. :meth:`close` closes it."""

    __slots__ = ("ended", "fd", "future", "left", "offset", "sent")

    def __init__(self, fd: int, offset: int, count: int, future: asyncio.Future[int]) -> None:
        self.fd = os.dup(fd)
        self.offset = offset
        self.left = count
        self.sent = 0
        self.future = future
        #: the file ended before ``left`` ran out, or ``sendfile`` cannot serve it
        self.ended = False

    @property
    def done(self) -> bool:
        return self.ended or not self.left

    def step(self, socket_fd: int) -> None:
        """Send what the socket takes now (see the module). ``OSError``: the socket or
        the file failed (an unsupported file only ends the sending: :attr:`ended`)."""
        budget = STEP
        while self.left and budget > 0:
            try:
                sent = os.sendfile(socket_fd, self.fd, self.offset, min(self.left, PIECE))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in UNSUPPORTED and not self.sent:
                    self.ended = True
                    return
                raise
            if not sent:
                self.ended = True  # (the file is shorter than said)
                return
            self.offset += sent
            self.left -= sent
            self.sent += sent
            budget -= sent

    def close(self, error: BaseException | None = None) -> None:
        """Close the descriptor; give the future the bytes sent, or ``error`` (once)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.future.done():
            if error is None:
                self.future.set_result(self.sent)
            else:
                self.future.set_exception(error)
