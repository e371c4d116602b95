"""Client connections on statewire's own socket transport: resolve, connect a non-blocking
socket with the loop's ``sock_connect``, then serve it as an accepted connection is served
(:meth:`~statewire.runtime.socket_transport.SocketTransport.accepted`, the connector as its
owner). Addresses are tried in the resolver's order, one after the other, as the loop's
``create_connection`` does; ``HostnameEndpoint`` races them instead.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, NamedTuple


class Opened(NamedTuple):
    """What a socket opener gives the connector: the protocol built for the connection
    (``None`` when the factory refused it)."""

    protocol: Any


async def tcp_socket(
    loop: asyncio.AbstractEventLoop, host: str, port: int, bind: Any = None
) -> socket.socket:
    """A TCP socket connected to ``host:port`` (the first address that answers)."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no address")
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if bind is not None:
                sock.bind(bind)
            await loop.sock_connect(sock, address)
        except OSError as error:
            sock.close()
            errors.append(error)
            continue
        except BaseException:  # cancelled (a timeout, stopConnecting)
            sock.close()
            raise
        return sock
    if len(errors) == 1 or all(type(e) is type(errors[0]) for e in errors):
        raise errors[0]
    raise OSError(f"connecting to {host} port {port}: " + "; ".join(map(str, errors)))


async def unix_socket(loop: asyncio.AbstractEventLoop, path: str) -> socket.socket:
    """A UNIX stream socket connected to ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock
