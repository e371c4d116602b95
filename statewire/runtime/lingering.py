"""A closing socket whose peer may still be sending: read and dropped for a while, then
closed.

Closing a TCP socket with bytes unread in its receive buffer, or with bytes on their way
to it, makes the kernel answer with a reset (RFC 2525 2.17), and a peer still sending then
has its next send refused: most clients stop there and never read the last replies they
were sent (an SMTP server's ``421 ... too many errors``, an HTTP server's ``413`` before a
body it will not read), so the error meant for them is lost. As Apache's and nginx's
lingering close do, a :class:`~statewire.runtime.socket_transport.SocketTransport` that
closes before its peer ended its stream shuts its sending side instead (its peer reads an
end of stream after the replies) and hands the socket to a :class:`Lingering`, which reads
what still comes and drops it, until the peer closes, :data:`LINGER_IDLE` seconds pass
without a byte, or :data:`LINGER_TIME` seconds pass in all; then it closes the socket (a
peer that closes at our end of stream, as clients do, costs one round trip). At most
:data:`MAX_LINGERING` sockets linger at once on a poller (past it the oldest closes), and
a port out of descriptors closes them all before it accepts again. The protocol
was told of the close already: lingering is the socket's, not the connection's. A poller
closes the sockets still lingering when it closes (the reactor's shutdown).
"""

from __future__ import annotations

import socket
from typing import Any

from statewire.runtime.pollers import READ, Poller, Watched

#: seconds without a byte from the peer before a lingering socket closes
LINGER_IDLE = 2.0
#: seconds a socket lingers at most, however the peer keeps sending
LINGER_TIME = 10.0
#: sockets a poller lets linger at once: past it, the one lingering longest closes (a
#: client whose requests end in refusals must not hold descriptors without bound)
MAX_LINGERING = 512
#: where what is read is dropped (one buffer for every lingering socket: never read)
_DROPPED = bytearray(256 * 1024)


class Lingering(Watched):
    """One socket lingering: see the module."""

    __slots__ = ("_deadline", "_pending", "_poller", "_reading", "_sock", "_timer")

    def __init__(self, poller: Poller, sock: socket.socket) -> None:
        self._poller = poller
        self._sock: socket.socket | None = sock
        self._reading = True
        self._pending = None
        loop = poller.loop
        self._deadline = loop.time() + LINGER_TIME
        lingering = poller.lingering
        if len(lingering) >= MAX_LINGERING:
            next(iter(lingering)).close()  # (the oldest: insertion order)
        poller.update(sock.fileno(), self, READ)
        try:
            self._timer: Any = loop.call_later(LINGER_IDLE, self.close)
        except BaseException:  # (the loop closed): watched by nobody, the caller closes it
            poller.update(sock.fileno(), self, 0)
            raise
        lingering[self] = None

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            read = sock.recv_into(_DROPPED)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not read:  # the peer closed: nothing more to wait for
            self.close()
            return
        self._timer.cancel()
        loop = self._poller.loop
        left = self._deadline - loop.time()
        if left <= 0:
            self.close()
            return
        self._timer = loop.call_later(min(LINGER_IDLE, left), self.close)

    def _write_ready(self) -> None:
        pass  # (never watched for writes)

    def _flush(self) -> None:
        pass  # (nothing to send)

    def close(self) -> None:
        """Stop lingering: close the socket (now, whatever the peer still sends)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._timer.cancel()
        self._poller.lingering.pop(self, None)
        try:
            self._poller.update(sock.fileno(), self, 0)
        finally:
            sock.close()


__all__ = ["LINGER_IDLE", "LINGER_TIME", "MAX_LINGERING", "Lingering"]
