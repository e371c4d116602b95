"""What an :class:`~statewire.machine.Engine` needs from the connection it runs: the
:class:`Host` interface (layer 4 implements it; see
:class:`statewire.declarative.ProtocolHost`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from statewire.machine.errors import RemoteProtocolError


class Host(Protocol):
    """The clock, the read side of the transport, and where errors go.

    An engine calls these from its own methods; none is called on the hot path of a frame
    except :meth:`seconds` (once a read, when the protocol has an idle timeout)."""

    def call_later(self, seconds: float, f: Callable[..., object], *args: Any) -> Any:
        """Schedule ``f(*args)``; return a handle with ``cancel()``."""
        ...

    def seconds(self) -> float:
        """The clock the timeouts count with."""
        ...

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop an output's coroutine runs on; ``None`` when there is none."""
        ...

    def pause_reading(self) -> None:
        """Stop reading from the peer (too much arrived while an output's work runs)."""
        ...

    def resume_reading(self) -> None:
        """Read from the peer again after :meth:`pause_reading`."""
        ...

    def peer_progress(self) -> int | None:
        """How far the peer has read what we sent (a count that grows as it reads), or
        ``None`` when the host cannot tell (an idle timeout then ignores our replies)."""
        ...

    def remote_error(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol (a framing error or an unroutable frame); the
        machine's state is unchanged."""
        ...

    def local_error(self, error: Exception) -> None:
        """Our own code raised (an output, a hook, an output's work)."""
        ...
