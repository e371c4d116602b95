"""What the transports ask of the kernel about a socket beyond ``send`` and ``recv``.

How many bytes it still holds for the peer, unacknowledged (``TIOCOUTQ``, Linux: the
progress the write deadlines watch), and closing with a reset (``SO_LINGER`` 0, as
Twisted's ``abortConnection``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from typing import Any

#: the ioctl that tells the bytes a socket's kernel holds for the peer, unacknowledged
_OUTQ: int | None = None
if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ = termios.TIOCOUTQ


def unacked(sock: Any) -> int:
    """Bytes the kernel holds for the peer on ``sock`` (sent or not, unacknowledged); 0
    where the platform cannot tell or the socket is gone."""
    if sock is None or _OUTQ is None:
        return 0
    try:
        count: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0
    return count


_LINGER_RESET = struct.pack("ii", 1, 0)


def reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send a reset (TCP; as Twisted's ``abortConnection``)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
