"""How the runtime's log records name a connection and a callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def peer_of(transport: Any) -> str:
    """The peer of ``transport`` as text, for a log record (never raises)."""
    try:
        return str(transport.getPeer())
    except Exception:
        return "an unknown peer"


def name_of(method: Callable[..., Any]) -> str:
    """``Class.method`` for a bound method, else the callable's name."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name
