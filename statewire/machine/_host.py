"""What an :class:`~statewire.machine.Engine` needs from the connections it runs: the
:class:`Host` interface (layer 4 implements it; see
:class:`statewire.declarative.ProtocolHost`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from statewire.machine.errors import RemoteProtocolError


class Host(Protocol):
    """The clock, the read side of the transport, and where errors go.

    One host serves every connection of a protocol class: each call names the connection
    by its *core* (the object the engine's machine is made for, the protocol), so a
    connection pays for no host object of its own. An engine calls these from its own
    methods; none is on the hot path of a frame except :meth:`seconds` (once a read, when
    the protocol has an idle timeout)."""

    def call_later(self, core: Any, seconds: float, f: Callable[..., object], *args: Any) -> Any:
        """Schedule ``f(*args)``; return a handle with ``cancel()``."""
        ...

    def seconds(self, core: Any) -> float:
        """The clock the timeouts count with."""
        ...

    def loop(self, core: Any) -> asyncio.AbstractEventLoop | None:
        """The event loop an output's coroutine runs on; ``None`` when there is none."""
        ...

    def read_limit(self, core: Any) -> int:
        """Bytes that may wait in the buffer, unframed, while an output's work is pending,
        before reading from the peer pauses (:meth:`pause_reading`)."""
        ...

    def pause_reading(self, core: Any) -> None:
        """Stop reading from the peer (too much arrived while an output's work runs)."""
        ...

    def resume_reading(self, core: Any) -> None:
        """Read from the peer again after :meth:`pause_reading`."""
        ...

    def peer_progress(self, core: Any) -> int | None:
        """How far the peer has read what we sent (a count that grows as it reads), or
        ``None`` when the host cannot tell (an idle timeout then ignores our replies)."""
        ...

    def remote_error(self, core: Any, error: RemoteProtocolError) -> None:
        """The peer broke the protocol (a framing error or an unroutable frame); the
        machine's state is unchanged."""
        ...

    def local_error(self, core: Any, error: Exception) -> None:
        """Our own code raised (an output, a hook, an output's work)."""
        ...
