"""The transports a protocol writes to: the names this module had before the runtime was
split into :mod:`statewire.runtime`, kept where existing code imports them.

See :mod:`statewire.runtime` for the map of the modules behind these names.
"""

from statewire.runtime.asyncio_transport import Bridge, Transport
from statewire.runtime.connection import Connection, Owner
from statewire.runtime.limits import CLOSE_TIMEOUT, HIGH_WATER, LOW_WATER
from statewire.runtime.pollers import READ, WRITE, EpollPoller, LoopPoller, Poller
from statewire.runtime.socket_transport import READ_SIZE, SocketTransport

__all__ = [
    "CLOSE_TIMEOUT",
    "HIGH_WATER",
    "LOW_WATER",
    "READ",
    "READ_SIZE",
    "WRITE",
    "Bridge",
    "Connection",
    "EpollPoller",
    "LoopPoller",
    "Owner",
    "Poller",
    "SocketTransport",
    "Transport",
]
