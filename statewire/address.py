"""Address objects returned by ``getPeer()`` and ``getHost()``, as Twisted shapes them."""

from __future__ import annotations

from collections.abc import Callable
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


def _tcp_maker(kind: type[IPv4Address] | type[IPv6Address]) -> Any:
    new = object.__new__

    def make(host: str, port: int) -> Any:
        address = new(kind)
        fields = address.__dict__  # (a frozen dataclass's fields live in its __dict__)
        fields["type"] = "TCP"
        fields["host"] = host
        fields["port"] = port
        return address

    return make


# ``IPv4Address("TCP", host, port)`` and ``IPv6Address(...)`` at half the cost: a frozen
# dataclass's ``__init__`` sets each field through ``object.__setattr__`` (these are made
# for every accepted connection and every ``getPeer()``; tests/test_address.py holds them
# equal to the classes' own)
tcp4: Callable[[str, int], IPv4Address] = _tcp_maker(IPv4Address)
tcp6: Callable[[str, int], IPv6Address] = _tcp_maker(IPv6Address)


def from_sockaddr(family_unix: bool, sockaddr: Any) -> Address:
    """The address object for what ``socket.getsockname()``/``getpeername()`` returned."""
    if family_unix:
        return UNIXAddress(sockaddr or None)
    if len(sockaddr) == 4:
        return tcp6(sockaddr[0], sockaddr[1])
    return tcp4(sockaddr[0], sockaddr[1])
