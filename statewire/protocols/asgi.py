"""Serve an ASGI 3 application's ``http`` and ``websocket`` scopes on statewire's HTTP/1.1
server.

``asgi(app)`` returns an :class:`~statewire.protocols.http.HTTPFactory` whose handler turns
each request into an ASGI ``http`` scope and its ``receive``/``send`` pair:

* ``receive()`` gives the request body in the pieces the server reads it in
  (``http.request`` messages, ``more_body`` true until its last bytes): a chunked body
  chunk by chunk as each completes, a ``Content-Length`` body in pieces of up to 256 KiB
  (``BODY_PIECE``), each given once whole, so a body trickling in slowly reaches the
  application a piece at a time, not byte by byte. Then it waits and gives
  ``http.disconnect`` once the response is complete or the client is gone. A client gone
  before the body's end gets the pending (or next) ``receive()`` an ``http.disconnect``
  (the bytes of an incomplete piece are dropped). Concurrent ``receive()`` calls (a
  stream read while a disconnect is polled, as Starlette does) each get a message.
* ``send()`` takes ``http.response.start`` (status, headers) and ``http.response.body``
  messages; a response sent in one body message gets a ``Content-Length``, one sent in
  several is streamed (chunked for HTTP/1.1), exactly as the server's own response writer
  decides (see :mod:`statewire.protocols._http_exchange`). The scope's ``extensions``
  offer ``http.response.pathsend``: its message (``path``, after the start) sends the
  file as the whole body, by the kernel where it can (``Response.send_file``; Starlette's
  ``FileResponse`` and ``StaticFiles`` use it when offered). A body message after the last
  one raises; an application that returns before its last body message gets the
  connection aborted (``500`` if nothing was sent yet), as uvicorn does, never a
  truncated body passed off as complete.
* A lost connection does not cancel the application (as the ASGI spec has it, and as
  uvicorn does): its ``receive()`` gives ``http.disconnect`` and its ``send()`` of a body
  raises ``ConnectionError`` (an ``OSError``), as the spec's version 2.4 asks (the scope
  says ``spec_version`` ``2.4``), so a streaming response stops (Starlette then raises
  ``ClientDisconnect``, which the server drops quietly: the client is gone).
* Once the response is complete the application may go on (a background task): the
  connection reads and answers the next requests meanwhile, as uvicorn does. What it
  raises then is logged; the complete response stands and the connection stays open.

Everything HTTP is the server's: limits, refusals, keep-alive, pipelining, ``100
Continue`` (sent on the application's first ``receive()``). The ``lifespan`` scope is
served as uvicorn serves it (:mod:`statewire.protocols._asgi_lifespan`; ``asgi(app,
lifespan="off")`` leaves it out), and a WebSocket handshake's ``websocket`` scope as
:mod:`statewire.protocols._asgi_websocket` says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any
from urllib.parse import quote, unquote

from statewire.protocols._asgi_lifespan import (
    MODES,
    Application,
    Lifespan,
    LifespanFailed,
    Message,
)
from statewire.protocols._asgi_websocket import channel_class, websocket_scope
from statewire.protocols._asgi_websocket import serve as serve_websocket
from statewire.protocols._forwarded import Forwarded
from statewire.protocols._http_head import split_absolute_form
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.protocols.websocket import MAX_MESSAGE, handshake_refusal, wants_websocket

log = logging.getLogger("statewire.asgi")

_TEXT = [(b"Content-Type", b"text/plain; charset=utf-8")]


_VERSIONS = {(1, 1): "1.1", (1, 0): "1.0"}
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


def scope_of(request: Request) -> dict[str, Any]:
    """The ASGI ``http`` scope of ``request``."""
    target = request.target
    headers = [(name.lower(), value) for name, value in request.headers.fields]
    absolute = None if target[:1] == b"/" else split_absolute_form(target)
    if absolute is not None:
        # RFC 9112 §3.2.2: the target's authority is the host, whatever Host says
        _, authority, target = absolute
        if target[:1] != b"/":
            target = b"/" + target
        headers = [(name, v) for name, v in headers if name != b"host"]
        headers.append((b"host", authority))
    raw_path, _, query = target.partition(b"?")
    path = raw_path.decode("latin-1")
    method = request.method
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": _VERSIONS.get(request.version) or "{}.{}".format(*request.version),
        "method": _METHODS.get(method) or method.decode("ascii"),
        "scheme": "https" if request.secure else "http",
        "path": unquote(path) if "%" in path else path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": request.client,
        "server": request.server,
        "extensions": (
            {"http.response.pathsend": {}}
            if request.tls is None
            else {"http.response.pathsend": {}, "tls": request.tls.asgi()}
        ),
    }


class _Exchange:
    """One request's ``receive`` and ``send``."""

    __slots__ = ("done", "ended", "read_all", "request", "response")

    def __init__(self, request: Request, response: Response) -> None:
        self.request = request
        self.response = response
        #: whether the response is complete, the application returned or the client went
        #: away: what a ``receive()`` after the body waits for (on ``done``, made then)
        self.ended = False
        self.done: asyncio.Future[None] | None = None
        #: whether the last ``http.request`` message was given
        self.read_all = False

    def end(self) -> None:
        self.ended = True
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    async def receive(self) -> Message:
        body = self.request.body
        if self.read_all or self.response.finished:
            if not self.ended:
                if self.done is None:
                    self.done = asyncio.get_running_loop().create_future()
                    # a client gone ends the wait (at once if it is gone already)
                    self.request.on_disconnect(self.end)
                await asyncio.shield(self.done)
            return {"type": "http.disconnect"}
        try:
            data = await body.chunk()
        except ConnectionError:  # the client went away before the body's end
            return {"type": "http.disconnect"}
        self.read_all = body.exhausted
        return {"type": "http.request", "body": data, "more_body": not self.read_all}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        response = self.response
        if kind == "http.response.start":
            response.start(message["status"], message.get("headers", ()))
            # the head leaves with the first body message if it comes before the
            # application waits (a response given whole: one write, its Content-Length),
            # else then: looked at when its first step, run inside the read, ends, or at
            # the loop's next turn; for HTTP/1.0, with the body (sent early, it would have
            # to be framed by the close)
            if self.request.version >= (1, 1):
                response.head_due = True
                if not response.first_step:
                    asyncio.get_running_loop().call_soon(response.send_head)
        elif kind == "http.response.body":
            if not response.started:
                raise RuntimeError("http.response.body before http.response.start")
            data = message.get("body", b"")  # (any bytes-like; else the writer's TypeError)
            if message.get("more_body", False):
                await response.write(data)
            else:
                await response.end(data)
                self.end()
        elif kind == "http.response.pathsend":
            # (the extension: the file's bytes as the body, sent by the kernel where it can)
            if not response.started:
                raise RuntimeError("http.response.pathsend before http.response.start")
            await response.send_file(message["path"])
            self.end()
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} in an http scope")


class ASGIFactory(HTTPFactory):
    """What :func:`asgi` returns: an :class:`~statewire.protocols.http.HTTPFactory` whose
    handler is the application, with its ``lifespan`` (see :func:`asgi`)."""

    #: at the shutdown, once every connection has closed: seconds the application's
    #: calls still under way are waited for before its lifespan's shutdown (they are
    #: cancelled when the reactor's loop ends)
    calls_timeout = 5.0

    def __init__(
        self,
        app: Application,
        lifespan: str = "auto",
        *,
        proxy_headers: bool = True,
        forwarded_allow_ips: str | Iterable[str] | None = None,
        root_path: str = "",
        ws_max_size: int = MAX_MESSAGE,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        **options: Any,
    ) -> None:
        if lifespan not in MODES:
            raise ValueError(f"lifespan={lifespan!r} is not one of {', '.join(MODES)}")
        #: what reads ``X-Forwarded-Proto`` and ``X-Forwarded-For`` from trusted proxies
        #: (``None``: ``proxy_headers=False``, they are never read; see
        #: :class:`Forwarded`)
        self.forwarded = Forwarded(forwarded_allow_ips) if proxy_headers else None
        #: the application's ``lifespan`` scope (``None``: ``lifespan="off"``)
        self.lifespan = None if lifespan == "off" else Lifespan(app, lifespan)
        if root_path and (
            not root_path.startswith("/")
            or root_path.endswith("/")
            or not root_path.isprintable()
            or any(mark in root_path for mark in " ?#")
        ):
            raise ValueError(
                f"root_path={root_path!r}: a path from '/', without a final '/', spaces, "
                "'?', '#' or control characters"
            )
        #: the path a proxy in front took off before passing requests on: each scope's
        #: ``root_path``, and put back before its ``path`` (as uvicorn's ``--root-path``)
        self.root_path = root_path
        #: the same before ``raw_path``, as a client sends it (percent-encoded)
        self.raw_root_path = quote(root_path, safe="/:@!$&'()*+,;=~").encode("ascii")
        #: the WebSocket sessions' protocol: their limit, pings and compression
        self.websocket = channel_class(
            ws_max_size, ws_ping_interval, ws_ping_timeout, ws_per_message_deflate
        )
        self.app = app
        #: the application's ``http`` calls under way (background work after a response
        #: included), and what waits for them to end (the shutdown, before the lifespan's)
        self._calls = 0
        self._idle: asyncio.Future[None] | None = None
        super().__init__(self._handle, **options)

    async def _handle(self, request: Request, response: Response) -> None:
        lifespan = self.lifespan
        scope = scope_of(request)
        root_path = self.root_path
        if root_path:
            scope["root_path"] = root_path
            scope["path"] = root_path + scope["path"]
            scope["raw_path"] = self.raw_root_path + scope["raw_path"]
        if self.forwarded is not None:
            self.forwarded.apply(scope)
        if lifespan is not None and not lifespan.ready and lifespan.begun:
            try:  # (statewire's ports wait for it)
                await lifespan.wait()
            except LifespanFailed:
                await response.send(503, _TEXT, b"the application did not start\n")
                return
        # a copy of the lifespan's state; an empty one without it (as uvicorn gives:
        # middleware may write to it)
        scope["state"] = (
            lifespan.state.copy() if lifespan is not None and lifespan.supported else {}
        )
        if request.method == b"CONNECT":
            # an application cannot tunnel in ASGI: its 2xx would be taken for a tunnel
            await response.send(501, _TEXT, b"CONNECT is not served\n")
            return
        exchange: _Exchange | None = None
        if b"upgrade" in dict(scope["headers"]) and wants_websocket(request):
            refusal = handshake_refusal(request)
            if refusal is not None:
                fields = [*_TEXT, (b"Sec-WebSocket-Version", b"13")]
                await response.send(400, fields, refusal.encode() + b"\n")
                return
            call: Awaitable[None] = serve_websocket(
                self.app,
                websocket_scope(scope, request),
                request,
                response,
                self.websocket,
            )
        else:
            exchange = _Exchange(request, response)
            call = self.app(scope, exchange.receive, exchange.send)
        self._calls += 1
        try:
            await call
        finally:
            if exchange is not None:
                exchange.end()
            self._calls -= 1
            if not self._calls and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
        if response.started and not response.finished:
            # ending it for the application would pass a truncated body off as whole
            raise RuntimeError("the ASGI application returned before its response's end")

    def beforeServing(self) -> Awaitable[None] | None:
        """The application's startup: the port accepts once it is answered."""
        if self.lifespan is None or self.lifespan.ready:
            return None
        return self._start_up(self.lifespan)

    @staticmethod
    async def _start_up(lifespan: Lifespan) -> None:
        if not lifespan.begun:
            lifespan.begin()
        await lifespan.wait()

    def afterServing(self) -> Awaitable[None] | None:
        """Once every connection has closed: wait for the application's calls still
        under way (as uvicorn waits for its tasks), then its lifespan's shutdown."""
        if self.lifespan is None or not self.lifespan.begun:
            return None
        return self._shut_down(self.lifespan)

    async def _shut_down(self, lifespan: Lifespan) -> None:
        if self._calls:
            log.info("waiting for %d ASGI application calls to end", self._calls)
            self._idle = idle = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(idle), self.calls_timeout)
            except asyncio.TimeoutError:
                # (a stream that waits for its next event never notices its client gone)
                log.info(
                    "%d ASGI application calls still running after %s s; "
                    "the application shuts down beside them",
                    self._calls,
                    self.calls_timeout,
                )
            finally:
                self._idle = None
        if lifespan.supported:
            log.info("waiting for the ASGI application's shutdown")
        await lifespan.shutdown()

    def stopFactory(self) -> None:
        """A startup still under way when the factory stops (its port failed, a
        shutdown came first) is abandoned: its task is cancelled."""
        if self.lifespan is not None:
            self.lifespan.abandon()
        super().stopFactory()


def asgi(
    app: Application,
    *,
    lifespan: str = "auto",
    proxy_headers: bool = True,
    forwarded_allow_ips: str | Iterable[str] | None = None,
    root_path: str = "",
    ws_max_size: int = MAX_MESSAGE,
    ws_ping_interval: float | None = 20.0,
    ws_ping_timeout: float | None = 20.0,
    ws_per_message_deflate: bool = True,
    **options: Any,
) -> ASGIFactory:
    """A factory serving ``app``'s ``http`` and ``websocket`` scopes, and its ``lifespan``
    scope as uvicorn does (``lifespan``: ``"auto"``, the default, ``"on"`` or ``"off"``; see
    :mod:`statewire.protocols._asgi_lifespan`): on statewire's ports the startup is
    answered before the port accepts a connection (``beforeServing``), and the shutdown
    comes once the reactor's shutdown has closed every connection (``afterServing``).
    Under Twisted (:func:`statewire.twisted.adapt`, on its asyncio reactor) the same,
    the connections accepted during the startup held until it is answered. ``options`` are
    :class:`~statewire.protocols.http.HTTPFactory`'s (``max_body``, ``server``...).

    As uvicorn, the scope's ``scheme`` and ``client`` follow ``X-Forwarded-Proto`` and
    ``X-Forwarded-For`` when the client is a trusted proxy: ``forwarded_allow_ips``
    (addresses, networks, ``"*"``; by default ``FORWARDED_ALLOW_IPS`` from the environment,
    else ``127.0.0.1`` and ``::1``); ``proxy_headers=False`` never reads them (see
    :class:`Forwarded`).

    ``root_path`` (uvicorn's ``--root-path``): the prefix a proxy in front takes off the
    paths it passes on; each scope's ``root_path`` is it, and its ``path`` (and
    ``raw_path``) have it put back first, as uvicorn does since 0.26 and as the ASGI spec
    reads (the application, Starlette's routing for one, takes it off again).

    WebSocket sessions take messages of ``ws_max_size`` bytes at most (16 MiB; ``1009``
    past it), ping every ``ws_ping_interval`` seconds (``None``: never) and close a client
    whose pong has not come ``ws_ping_timeout`` seconds later (``None``: never), and agree on
    permessage-deflate (RFC 7692) when their client offers it
    (``ws_per_message_deflate``): uvicorn's options of those names, with its defaults.

    The application runs in a task of its own from its first step, and that step runs at
    once, inside the read of the request's head (``eager=True, in_task=True``): anyio,
    under Starlette and FastAPI, finds its current task, and an application that answers
    without waiting answers inside the read, as the server's own handlers do (its task
    then ends at its first turn). ``eager=False`` schedules the task instead, as before;
    ``in_task=False`` saves the task, for an application that uses no anyio."""
    # a task from the start: anyio (Starlette, FastAPI) needs asyncio.current_task()
    options.setdefault("eager", True)
    options.setdefault("in_task", True)
    # the application is told of a client gone, by receive(), not cancelled
    options.setdefault("cancel_on_disconnect", False)
    return ASGIFactory(
        app,
        lifespan,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        ws_max_size=ws_max_size,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        ws_per_message_deflate=ws_per_message_deflate,
        **options,
    )


__all__ = [
    "ASGIFactory",
    "Application",
    "Forwarded",
    "LifespanFailed",
    "Message",
    "asgi",
    "scope_of",
]
