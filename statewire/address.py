"""Address objects returned by ``getPeer()`` and ``getHost()``, as Twisted shapes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class IPv4Address:
    """A TCP endpoint over IPv4: ``type`` is ``"TCP"``."""

    type: Literal["TCP"]
    host: str
    port: int


@dataclass(frozen=True)
class IPv6Address:
    """A TCP endpoint over IPv6: ``type`` is ``"TCP"``."""

    type: Literal["TCP"]
    host: str
    port: int


@dataclass(frozen=True)
class UNIXAddress:
    """A UNIX socket path (``name``; ``None`` for an unnamed client socket)."""

    name: str | None
    type: Literal["UNIX"] = "UNIX"


Address = IPv4Address | IPv6Address | UNIXAddress


def from_sockaddr(family_unix: bool, sockaddr: Any) -> Address:
    """The address object for what ``socket.getsockname()``/``getpeername()`` returned."""
    if family_unix:
        return UNIXAddress(sockaddr or None)
    if len(sockaddr) == 4:
        return IPv6Address("TCP", sockaddr[0], sockaddr[1])
    return IPv4Address("TCP", sockaddr[0], sockaddr[1])
