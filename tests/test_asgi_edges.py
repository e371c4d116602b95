"""The ASGI adapter on requests and messages at the edges of the spec: ``HEAD`` answered
with no body, a request refused while its application reads the body, ``CONNECT``, statuses
that are not statuses, the scope's ``state``. Served in process (one connection, a test
clock), compared with what uvicorn does where the spec leaves it open."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from http_helpers import responses, serve, serve_until_quiet
from runtime_helpers import error_records, listen, scenario

from statewire._reactor import Reactor
from statewire.protocols.asgi import Forwarded, asgi
from statewire.testing.memory import Clock, StringTransport

Scope = MutableMapping[str, Any]
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def empty_for_head(scope: Scope, receive: Any, send: Any) -> None:
    """Leaves out the body of a ``HEAD`` and says no length (as a hand-written app may)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    body = b"" if scope["method"] == "HEAD" else b"0123456789"
    await send({"type": "http.response.body", "body": body})


def head_of(wire: bytes) -> bytes:
    return wire.split(b"\r\n\r\n", 1)[0]


def test_a_head_answered_without_a_body_says_no_length() -> None:
    """RFC 9110 §8.6: the length of a ``HEAD``'s response is the ``GET``'s or none; the
    application gave no body and no length, so none (it was ``Content-Length: 0``)."""
    served = serve([b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET], asgi(empty_for_head).handler)
    head, rest = served.output.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-a: 1" in head
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")  # (no body between: the next response)
    assert b"Content-Length: 10" in head_of(rest) and rest.endswith(b"0123456789")
    assert not served.closed


def test_a_head_answered_with_the_get_body_says_its_length_and_sends_none() -> None:
    async def whole(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"0123456789"})

    served = serve([b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET], asgi(whole).handler)
    head, rest = served.output.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 10" in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\n0123456789")


def test_a_request_refused_mid_body_tells_the_application_instead_of_cancelling_it() -> None:
    """A chunked body gone bad after its first chunk: the server answers ``400`` and
    closes, and the application, reading the body, gets ``http.disconnect`` (ASGI does
    not cancel an application; nor does uvicorn here). It then finds it cannot answer."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        try:
            for _ in range(10):
                message = await receive()
                seen.append(message["type"])
                if message["type"] == "http.disconnect" or not message["more_body"]:
                    break
            try:
                await send({"type": "http.response.start", "status": 200})
                await send({"type": "http.response.body", "body": b"late"})
            except OSError as error:
                seen.append(type(error).__name__)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def main() -> tuple[bytes, bool]:
        return await serve_until_quiet([head + b"3\r\nabc\r\n", b"zz\r\nabc\r\n"], asgi(app))

    with error_records() as errors:
        wire, closing = asyncio.run(main())
    assert [status for status, _ in responses(wire)] == [400]
    assert closing
    assert seen == ["http.request", "http.disconnect", "ConnectionError"]
    assert b"late" not in wire
    assert not [record for record in errors if record.exc_info]


def test_connect_is_answered_501_without_the_application() -> None:
    """An ASGI application cannot open a tunnel: a ``2xx`` of its to ``CONNECT`` would be
    taken for one (uvicorn answers ``400``). The connection goes on."""
    called: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        called.append(scope["method"])
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"<html>"})

    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    served = serve([connect + GET], asgi(app).handler)
    assert [status for status, _ in responses(served.output)] == [501, 200]
    assert called == ["GET"]


@pytest.mark.parametrize("status", [600, 999, 199, 200.7, "200", True])
def test_a_status_that_is_not_a_final_status_is_a_500(status: object) -> None:
    """RFC 9110 §15: a status is 100 to 599 (it was 200 to 999, and a float was cut to its
    int); a string or a bool is the application's mistake (uvicorn refuses them too)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status})
        await send({"type": "http.response.body", "body": b"x"})

    with error_records() as errors:
        served = serve([GET], asgi(app).handler)
    assert [status for status, _ in responses(served.output)] == [500]
    raised = [type(record.exc_info[1]) for record in errors if record.exc_info]
    assert raised == [ValueError if type(status) is int else TypeError]


def test_an_int_enum_status_is_its_number() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": HTTPStatus.CREATED})
        await send({"type": "http.response.body", "body": b"made"})

    served = serve([GET], asgi(app).handler)
    assert served.output.startswith(b"HTTP/1.1 201 Created\r\n")
    assert responses(served.output) == [(201, b"made")]


def test_the_scope_has_a_state_of_its_own_without_a_lifespan() -> None:
    states: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        state = scope["state"]
        states.append(state)
        state["seen"] = len(states)  # (its own: the next request's is empty again)
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    served = serve([GET + GET], asgi(app, lifespan="off").handler)
    assert [status for status, _ in responses(served.output)] == [204, 204]
    assert states == [{"seen": 1}, {"seen": 2}] and states[0] is not states[1]


# -- X-Forwarded-Proto and X-Forwarded-For from a trusted proxy ----------------------------


def forwarded_scope(client: tuple[str, int] | None, *fields: tuple[bytes, bytes]) -> Scope:
    return {"scheme": "http", "client": client, "headers": list(fields)}


PROXY = ("127.0.0.1", 5000)


@pytest.mark.parametrize(
    ("client", "fields", "scheme", "seen_client"),
    [
        # a proxy on the same machine, trusted by default
        (PROXY, [(b"x-forwarded-proto", b"https")], "https", PROXY),
        (PROXY, [(b"x-forwarded-proto", b" HTTPS ")], "https", PROXY),
        (PROXY, [(b"x-forwarded-for", b"203.0.113.7")], "http", ("203.0.113.7", 0)),
        # appended to by trusted proxies: the first untrusted from the right
        (
            PROXY,
            [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7, 127.0.0.1")],
            "http",
            ("203.0.113.7", 0),
        ),
        (
            PROXY,
            [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"203.0.113.7")],
            "http",
            ("203.0.113.7", 0),
        ),
        (("::1", 5000), [(b"x-forwarded-for", b"2001:db8::1")], "http", ("2001:db8::1", 0)),
        # what is not a scheme or not an address changes nothing
        (PROXY, [(b"x-forwarded-proto", b"gopher")], "http", PROXY),
        (PROXY, [(b"x-forwarded-proto", b"gopher, https")], "https", PROXY),  # (the last)
        (PROXY, [(b"x-forwarded-proto", b"https, gopher")], "http", PROXY),
        (PROXY, [(b"x-forwarded-for", b"")], "http", PROXY),
        (PROXY, [(b"x-forwarded-for", b"203.0.113.7, 127.0.0.1:80")], "http", PROXY),
        # garbage the client wrote left of its address cannot hide it
        (PROXY, [(b"x-forwarded-for", b"garbage, 203.0.113.9")], "http", ("203.0.113.9", 0)),
        (
            PROXY,
            [(b"x-forwarded-for", b", 1.2.3.4:80, 203.0.113.9, ::1")],
            "http",
            ("203.0.113.9", 0),
        ),
        # a dual-stack listener's loopback is the IPv4 one
        (
            ("::ffff:127.0.0.1", 1),
            [(b"x-forwarded-proto", b"https")],
            "https",
            ("::ffff:127.0.0.1", 1),
        ),
        # anyone else writes them in vain
        (
            ("203.0.113.9", 5000),
            [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"10.0.0.1")],
            "http",
            ("203.0.113.9", 5000),
        ),
        (None, [(b"x-forwarded-proto", b"https")], "http", None),  # a UNIX socket's
    ],
)
def test_forwarded_fields_are_believed_from_trusted_proxies_only(
    client: tuple[str, int] | None,
    fields: list[tuple[bytes, bytes]],
    scheme: str,
    seen_client: tuple[str, int] | None,
) -> None:
    scope = forwarded_scope(client, *fields)
    Forwarded(None).apply(scope)
    assert (scope["scheme"], scope["client"]) == (scheme, seen_client)


def test_forwarded_trust_is_configurable() -> None:
    fields = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"10.1.2.3, 10.9.9.9")]
    inside = Forwarded("10.0.0.0/8")
    scope = forwarded_scope(("10.9.9.9", 1), *fields)
    inside.apply(scope)
    assert scope["scheme"] == "https" and scope["client"] == ("10.1.2.3", 0)  # (all trusted)
    scope = forwarded_scope(PROXY, *fields)
    inside.apply(scope)  # (loopback is no longer trusted when a list is given)
    assert scope["scheme"] == "http" and scope["client"] == PROXY
    everyone = Forwarded("*")
    scope = forwarded_scope(None, *fields)
    everyone.apply(scope)
    assert scope["scheme"] == "https"
    with pytest.raises(ValueError):
        Forwarded("not-an-address")


def test_forwarded_trust_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")
    assert Forwarded(None).trusts("192.0.2.1") and not Forwarded(None).trusts("127.0.0.1")


def test_asgi_reads_the_forwarded_fields_over_a_real_socket() -> None:
    """httpx on loopback is a trusted proxy by default; with ``proxy_headers=False`` the
    fields are the application's to read, never the scope's."""
    seen: list[tuple[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append((scope["scheme"], scope["client"]))
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    fields = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}

    async def main(reactor: Reactor) -> None:
        for factory in (asgi(app), asgi(app, proxy_headers=False)):
            port = await listen(reactor, factory)
            async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
                got = await client.get(f"http://127.0.0.1:{port}/", headers=fields)
                assert got.status_code == 204

    scenario(main, timeout=60)
    assert seen[0] == ("https", ("203.0.113.7", 0))
    assert seen[1][0] == "http" and seen[1][1][0] == "127.0.0.1"


def connected(app: Any) -> tuple[Any, StringTransport]:
    """A connection of ``asgi(app)`` in memory (a test clock, no lifespan)."""
    protocol = asgi(app, lifespan="off").buildProtocol(None)  # type: ignore[arg-type]
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_head_whose_body_is_long_in_coming_leaves_at_the_next_turn() -> None:
    """A stream of events (SSE) whose first event comes late: its head leaves at the
    loop's next turn after ``http.response.start``, chunked, as uvicorn sends it at once
    (before 2026-12-03 it waited for the first event); a response given whole still
    leaves in one write with its length."""
    gate = asyncio.Event()

    async def events(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["path"] == "/late":
            await gate.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> tuple[bytes, bytes, bytes]:
        protocol, transport = connected(events)
        protocol.dataReceived(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(5):
            await asyncio.sleep(0)
        now = transport.value()
        transport.clear()
        protocol.dataReceived(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(5):
            await asyncio.sleep(0)
        before = transport.value()
        gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        after = transport.value()
        protocol.connectionLost()
        return now, before, after

    now, before, after = asyncio.run(main())
    assert now.startswith(b"HTTP/1.1 200 OK\r\n") and now.endswith(b"\r\n0\r\n\r\n")
    assert before.startswith(b"HTTP/1.1 200 OK\r\n") and before.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in before and b"data:" not in before
    assert after == before + b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"


def test_a_head_due_waits_for_the_body_a_client_holds_back_for_100_continue() -> None:
    """``send_head`` at the next turn would say ``Connection: close`` and forgo the
    ``100``: while the body is held back, the head waits for the application's body
    message, and the ``100`` comes when the application reads."""
    gate = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await gate.wait()
        message = await receive()
        await send({"type": "http.response.body", "body": message["body"]})

    async def main() -> tuple[bytes, bytes]:
        protocol, transport = connected(app)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        for _ in range(5):
            await asyncio.sleep(0)
        before = transport.value()
        gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.dataReceived(b"hello")
        for _ in range(5):
            await asyncio.sleep(0)
        after = transport.value()
        protocol.connectionLost()
        return before, after

    before, after = asyncio.run(main())
    assert before == b""
    assert after.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b"Connection: close" not in after and after.endswith(b"\r\n\r\nhello")


def test_an_http_10_head_leaves_with_its_body_keeping_its_length() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await asyncio.sleep(0)  # (a middleware's hop)
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"whole"})

    served = serve(
        [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"], asgi(app, lifespan="off").handler
    )
    assert b"Content-Length: 5\r\n" in served.output and b"Connection: keep-alive" in served.output
    assert not served.closed


def test_a_head_answered_by_a_stream_says_it_is_chunked_as_the_get_would() -> None:
    """A streamed answer to ``HEAD`` keeps the head a ``GET`` would have had (a review's
    differential found it lost its ``Transfer-Encoding`` with the empty-body rule)."""

    async def stream(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    served = serve([b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET], asgi(stream).handler)
    head, rest = served.output.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"2\r\nab\r\n0\r\n\r\n")
