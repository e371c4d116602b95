"""Errors of the declarative layer: whose fault it was, and what it was about.

A *remote* protocol error is the peer's fault: it sent a frame no route could turn into an
input, or an input the current state does not accept. The protocol's ``remoteError`` hook
decides what happens (by default: an optional reply, a log line, the connection closed);
the state is unchanged. Framing errors (:class:`statewire.framing.FramingError`) are remote
errors too and reach the same hook.

A *local* error is ours: an exception raised by an output or a hook. It is logged and the
connection aborted; the server and every other connection carry on.
"""

from __future__ import annotations

from typing import Any

from statewire.error import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "BadArguments",
    "DefinitionError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "UnexpectedInput",
    "UnknownKey",
    "UnroutableFrame",
    "shown",
]


class DefinitionError(TypeError):
    """A declarative protocol's definition is inconsistent (raised at class creation)."""


class UnexpectedInput(RemoteProtocolError):
    """A frame became an input the current state does not accept (automat's
    ``NoTransition``, when the input came from the peer)."""

    def __init__(self, *, state: str, input: str, frame: Any = None) -> None:
        super().__init__(
            f"input {input!r} is not accepted in state {state!r}", state=state, frame=frame
        )
        #: name of the input that was refused
        self.input = input


def shown(frame: Any, limit: int = 60) -> str:
    """``repr(frame)`` cut to about ``limit`` characters: the peer chooses a frame's size,
    and error messages end up in logs."""
    text = repr(frame)
    if len(text) <= limit:
        return text
    size = f", {len(frame)} bytes" if isinstance(frame, (bytes, bytearray)) else ""
    return f"{text[:limit]}...{size}"


class UnroutableFrame(RemoteProtocolError):
    """A frame no route of the current state turns into an input (an unknown command
    with no fallback, arguments a converter refused, or bytes in a state that reads none).
    When a route's key or converter refused the frame, its exception is ``__cause__``.
    """


class UnknownKey(UnroutableFrame):
    """The frame's key (a command's verb, a message's type) has no input in the state's
    route, and the route has no ``unknown`` input: an unknown command."""


class BadArguments(UnroutableFrame):
    """The frame's key has an input, but its arguments do not fit: the converter refused
    them, or a verb came with too few or too many words."""
