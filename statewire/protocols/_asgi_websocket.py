"""An ASGI application's ``websocket`` scope (ASGI WebSocket spec 2.4, as uvicorn serves
it), over statewire's :class:`~statewire.protocols.websocket.WebSocket`.

A request that asks for a WebSocket (``websocket`` in ``Upgrade`` and the ``upgrade``
connection option, :func:`~statewire.protocols.websocket.wants_websocket`) and is a valid
handshake (:func:`~statewire.protocols.websocket.handshake_refusal`) becomes a
``websocket`` scope; one that asks and is not gets ``400`` without the application (one
with ``Upgrade: websocket`` but not the option is an ``http`` scope, as under uvicorn).
The application's first ``receive()`` gives ``websocket.connect``; it answers with one of:

* ``websocket.accept`` (``subprotocol``: one the client offered, else the call raises
  ``ValueError``; ``headers``): ``101``, permessage-deflate agreed on when the client
  offers it (as uvicorn does; ``asgi(app, ws_per_message_deflate=False)`` never does, nor
  an accept whose ``headers`` answer ``Sec-WebSocket-Extensions`` themselves), and from
  then on the connection is the session's (the accept returns once it is). ``receive()``
  gives ``websocket.receive`` (``text`` or ``bytes``) for each message, then
  ``websocket.disconnect`` with the close code (the client's, ``1005`` when its close
  frame had none, ``1006`` when the connection was lost without one, before the switch
  too, the server's own code when it closed first: ``1001`` at a graceful stop, ``1011``
  when a ping went unanswered) and reason; every later ``receive()`` gives the same.
  ``send()`` takes ``websocket.send`` (``bytes`` or ``text``) and ``websocket.close``
  (``code``, default ``1000``, and ``reason``).
* ``websocket.close`` before the accept: ``403``, as the spec asks, and the call's later
  ``receive()`` gives ``websocket.disconnect`` (``1006``).
* ``websocket.http.response.start`` and ``.body`` (the "WebSocket Denial Response"
  extension, named in the scope's ``extensions``): an HTTP response of the application's
  own instead of the ``101``.

Messages the application has not received yet are kept; past :data:`UNREAD_HIGH_WATER`
(bytes of binary messages, characters of text) the session stops reading the connection
(the client's bytes wait in the kernel, then in the client) until it catches up.
``send()`` waits while the client does not take what was sent. A ``send()`` after the
session ended raises: ``ConnectionError`` (an ``OSError``, spec 2.4) once the client
closed or went away, ``RuntimeError`` after the application's own close. The server pings
every 20 s and closes a client whose pong does not come within 20 s (``1011``), as
uvicorn does.

An application that returns without answering the handshake gets ``500``; one that
returns with the session open closes it with ``1000``; one that raises closes it with
``1011`` (the exception is logged; a ``ConnectionError`` after its client left ends it
quietly). The application is not cancelled when the client leaves: its ``receive()``
gives the disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import Any

from statewire.protocols._asgi_lifespan import Message
from statewire.protocols.http import Request, Response
from statewire.protocols.websocket import (
    ABNORMAL,
    MAX_MESSAGE,
    WebSocket,
    accept_fields,
    subprotocols,
)

#: bytes of received messages the application has not taken, past which the session
#: takes no more frames until it does
UNREAD_HIGH_WATER = 1 << 20
log = logging.getLogger("statewire.asgi")


def websocket_scope(http_scope: dict[str, Any], request: Request) -> dict[str, Any]:
    """The ``websocket`` scope of a handshake, from the ``http`` scope it would have had
    (its headers, path, client and server; ``scheme`` ``ws`` or ``wss`` as that was
    ``http`` or ``https``, trusted proxies' ``X-Forwarded-Proto`` included)."""
    scope = dict(http_scope)
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = subprotocols(request)
    scope["extensions"] = {"websocket.http.response": {}}
    if "tls" in http_scope["extensions"]:
        scope["extensions"]["tls"] = http_scope["extensions"]["tls"]
    return scope


class Channel(WebSocket):
    """The session's protocol: the client's messages queued for ``receive()``."""

    #: the server pings every 20 s and closes a client that does not answer within 20 s,
    #: as uvicorn does
    ping_interval = 20.0

    def __init__(self) -> None:
        self.events: deque[tuple[Message, int]] = deque()
        #: the messages queued, in bytes (binary) and characters (text)
        self.unread = 0
        #: the ``websocket.disconnect`` once the session ended
        self.ended: Message | None = None
        #: whether reading stopped for the unread messages
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._congested: asyncio.Future[None] | None = None
        self._connected: asyncio.Future[None] | None = None

    # -- the connection -------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self._resolve(self._connected)

    async def switched(self) -> None:
        """Return once the connection switched to the session (or the session ended
        first: the client gone before it)."""
        if self.transport is None and self.ended is None:
            if self._connected is None:
                self._connected = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._connected)

    # -- the client's messages --------------------------------------------------------------

    def messageReceived(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._put({"type": "websocket.receive", "text": message}, len(message))
        else:
            self._put({"type": "websocket.receive", "bytes": message}, len(message))

    def websocketClosed(self, code: int, reason: str) -> None:
        self.ended = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._resolve(self._waiter)
        self._resolve(self._connected)
        self._release_writers()
        if self.paused:
            # reading again: what comes now is dropped, up to the client's close frame
            # that the server's own close waits for
            self.paused = False
            if self.transport is not None:
                self.transport.resumeProducing()
            if self.machine_engine is not None:
                self.machine_engine.release("unread")

    def _put(self, event: Message, size: int) -> None:
        self.events.append((event, size))
        self.unread += size
        if self.unread > UNREAD_HIGH_WATER and not self.paused:
            # no frame more is cut, and no byte more is read, until the application
            # catches up (the engine's hold alone keeps reading into its buffer)
            self.paused = True
            if self.machine_engine is not None:
                self.machine_engine.hold("unread")
            self.transport.pauseProducing()
        self._resolve(self._waiter)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.paused and self.transport is not None:
            self.transport.pauseProducing()  # (again: the HTTP side may have resumed it)

    async def get(self) -> Message:
        """The next event for ``receive()``: a message, or the disconnect (for ever)."""
        while not self.events:
            if self.ended is not None:
                return self.ended
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)
        event, size = self.events.popleft()
        self.unread -= size
        if self.paused and self.unread <= UNREAD_HIGH_WATER:
            self.paused = False
            if self.transport is not None and self.ended is None:
                self.transport.resumeProducing()
            if self.machine_engine is not None:
                self.machine_engine.release("unread")
        return event

    # -- sending --------------------------------------------------------------------------

    def transportCongested(self, congested: bool) -> None:
        super().transportCongested(congested)
        if not congested:
            self._release_writers()
        elif self._congested is None and self.ended is None:
            self._congested = asyncio.get_running_loop().create_future()

    async def writable(self) -> None:
        """Return when the client has taken enough of what was sent (or is gone)."""
        while self._congested is not None and self.ended is None:
            await asyncio.shield(self._congested)

    def _release_writers(self) -> None:
        waiting, self._congested = self._congested, None
        self._resolve(waiting)

    @staticmethod
    def _resolve(future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)


def _seconds(name: str, value: object) -> None:
    """Refuse a duration that is not a finite positive number of seconds, or ``None``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: seconds (a number), or None")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r}: a finite positive number of seconds, or None")


def channel_class(
    max_message: int = MAX_MESSAGE,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    compression: bool = True,
) -> type[Channel]:
    """The sessions' protocol for these settings (uvicorn's ``--ws-max-size``,
    ``--ws-ping-interval``, ``--ws-ping-timeout``, ``--ws-per-message-deflate``; ``None``
    for either timing: no pings, no pong waited for): :class:`Channel` itself for the
    defaults, else a subclass made once (its framings bound to ``max_message``)."""
    if isinstance(max_message, bool) or not isinstance(max_message, int) or max_message <= 0:
        raise ValueError(f"ws_max_size={max_message!r}: a positive number of bytes")
    _seconds("ws_ping_interval", ping_interval)
    _seconds("ws_ping_timeout", ping_timeout)
    if not isinstance(compression, bool):
        raise ValueError(f"ws_per_message_deflate={compression!r}: True or False")
    settings = {
        "max_message": max_message,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "compression": compression,
    }
    if all(getattr(Channel, name) == value for name, value in settings.items()):
        return Channel
    return type("Channel", (Channel,), settings)


_CONNECTING, _OPEN, _DENYING, _DENIED = range(4)


class Session:
    """One ``websocket`` call's ``receive`` and ``send``."""

    def __init__(
        self, request: Request, response: Response, channel: type[Channel] = Channel
    ) -> None:
        self.request = request
        self.response = response
        #: the session's protocol (its limit, pings and compression: :func:`channel_class`)
        self.channel_class = channel
        self.state = _CONNECTING
        self.connect_given = False
        self.channel: Channel | None = None
        #: whether the application sent ``websocket.close`` (after it, ``send()`` raises
        #: ``RuntimeError``, not ``ConnectionError``)
        self.closed_by_app = False

    async def receive(self) -> Message:
        if not self.connect_given:
            self.connect_given = True
            return {"type": "websocket.connect"}
        channel = self.channel
        if channel is not None:
            return await channel.get()
        if self.state == _CONNECTING:
            raise RuntimeError("receive() before websocket.accept or websocket.close")
        return {"type": "websocket.disconnect", "code": ABNORMAL, "reason": ""}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.state
        if state == _CONNECTING:
            await self._answer(kind, message)
        elif state == _OPEN:
            await self._in_session(kind, message)
        elif state == _DENYING and kind == "websocket.http.response.body":
            body = message.get("body", b"")
            if message.get("more_body", False):
                await self.response.write(body)
            else:
                self.state = _DENIED
                await self.response.end(body)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}: the handshake was refused")

    async def _answer(self, kind: str, message: Message) -> None:
        """The application's answer to the handshake."""
        if kind == "websocket.accept":
            channel = self.channel_class()
            fields = accept_fields(
                self.request, message.get("subprotocol"), message.get("headers") or (), channel
            )
            # (refused fields raise here, before the 101: the handshake is still to answer)
            await self.response.upgrade(channel, fields, detach=True)
            self.channel = channel
            self.state = _OPEN
            # a client gone before the switch ends the session (it never connects)
            self.request.on_disconnect(channel.abandoned)
            # the accept returns once the connection is the session's: inside the read
            # of the handshake (the application's first step) its sends would otherwise
            # pile up unsent, never waiting, the loop never turning
            await channel.switched()
        elif kind == "websocket.close":
            self.state = _DENIED
            await self.response.send(403, [(b"Content-Type", b"text/plain")], b"")
        elif kind == "websocket.http.response.start":
            self.state = _DENYING
            self.response.start(message["status"], message.get("headers", ()))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} before the handshake's answer")

    async def _in_session(self, kind: str, message: Message) -> None:
        channel = self.channel
        assert channel is not None
        if channel.close_code is not None:
            if self.closed_by_app:
                raise RuntimeError(f"unexpected ASGI message {kind!r} after websocket.close")
            raise ConnectionError("the WebSocket session ended")
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                text = message.get("text")
                if text is None:
                    raise ValueError("websocket.send with neither bytes nor text")
                channel.sendMessage(str(text))
            else:
                channel.sendMessage(bytes(data))
            await channel.writable()
        elif kind == "websocket.close":
            self.closed_by_app = True
            channel.sendClose(message.get("code") or 1000, message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a WebSocket session")

    def finish(self, error: BaseException | None) -> None:
        """The application returned (``error``: it raised): a session left open is
        closed, ``1011`` after an error; a handshake left unanswered raises (``500``)."""
        channel = self.channel
        if channel is not None:
            if channel.close_code is None:
                if error is None:
                    channel.sendClose(1000)
                else:
                    channel.sendClose(1011, "the application failed")
            return
        if self.state == _CONNECTING and error is None:
            raise RuntimeError("the ASGI application returned without answering the handshake")
        if self.state == _DENYING and error is None:
            raise RuntimeError("the ASGI application returned before its denial's end")


async def serve(
    app: Any,
    scope: dict[str, Any],
    request: Request,
    response: Response,
    protocol: type[Channel] = Channel,
) -> None:
    """Run ``app`` on the ``websocket`` ``scope`` of ``request`` (a valid handshake), its
    session a ``protocol`` (:func:`channel_class`). A ``ConnectionError`` out of the
    application after its client left (its ``send()``'s) ends the call quietly, as uvicorn
    takes its ``ClientDisconnected``."""
    session = Session(request, response, protocol)
    try:
        await app(scope, session.receive, session.send)
    except ConnectionError as error:
        channel = session.channel
        if channel is None or channel.close_code is None or session.closed_by_app:
            session.finish(error)
            raise
        log.info("ASGI WebSocket application stopped after its client left: %r", error)
        return
    except Exception as error:
        session.finish(error)
        raise
    session.finish(None)
