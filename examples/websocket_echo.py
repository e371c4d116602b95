"""A WebSocket echo server (RFC 6455): an HTTP ``Upgrade`` to ``101``, then WebSocket frames.

    GET / with Upgrade: websocket    101 Switching Protocols, then every message is echoed
    GET / without                    426 Upgrade Required

The HTTP side is statewire's HTTP machine: the handler answers ``101`` with
``response.upgrade(protocol, fields)`` and the connection's remaining bytes, those already
received included, are framed from then on by :class:`WebSocketEcho`, a
:class:`~statewire.protocols.websocket.WebSocket`: the declared machine of a WebSocket
session, whose one framing is a client frame (:mod:`grammars.websocket`). The echo is one
method; what it refuses, and how, is the library's (see
:mod:`statewire.protocols.websocket`).

python examples/websocket_echo.py --port 8080
statewire diagram examples/websocket_echo.py:WebSocketEcho
"""

from __future__ import annotations

from grammars.websocket import frame, unmask
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.protocols.websocket import (
    WebSocket,
    accept_fields,
    accept_key,
    handshake_refusal,
    wants_websocket,
)


class WebSocketEcho(WebSocket):
    """Every message back, as it came (text as text, binary as binary)."""

    def messageReceived(self, message: str | bytes) -> None:
        self.sendMessage(message)


async def handle(request: Request, response: Response) -> None:
    """Upgrade a valid WebSocket handshake (RFC 6455 §4.2); anything else is refused."""
    if not wants_websocket(request):
        # (RFC 9110 §7.8: a sender of Upgrade sends the "upgrade" connection option too)
        fields = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        await response.send(426, fields, b"a WebSocket endpoint\n")
    elif handshake_refusal(request) is not None:
        await response.send(400, [("Sec-WebSocket-Version", "13")], b"bad handshake\n")
    else:
        echo = WebSocketEcho()  # (permessage-deflate when the client offers it)
        await response.upgrade(echo, accept_fields(request, protocol=echo))


factory = HTTPFactory(handle)

__all__ = ["WebSocketEcho", "accept_key", "factory", "frame", "handle", "unmask"]


def main() -> None:
    from _cli import run_with_endpoint

    run_with_endpoint(factory, __doc__)


if __name__ == "__main__":
    main()
