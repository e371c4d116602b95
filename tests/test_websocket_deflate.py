"""permessage-deflate (RFC 7692): the negotiation read from the client's offers, the
session's compression and inflation (Hypothesis: round trips through zlib, compressed
sessions under any fragmentation and chunking), what a session refuses (a compressed bomb
costs the limit, not its expansion), and real clients (``websockets``) against the echo
example and ``asgi(app)``."""

from __future__ import annotations

import asyncio
import base64
import socket
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import recv_exactly
from runtime_helpers import listen, scenario
from websocket_helpers import Recorded, chunked, client_frame, frames_of, session

from grammars import MalformedError
from grammars.websocket import BINARY, CLOSE, CONTINUATION, PING, TEXT, client_frames, read_header
from statewire._reactor import Reactor
from statewire.protocols._websocket_deflate import (
    TAIL,
    Agreement,
    Deflate,
    Malformed,
    negotiate,
    offers,
)
from statewire.protocols.asgi import asgi
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.protocols.websocket import accept_fields, handshake_refusal

websockets_client = pytest.importorskip("websockets.asyncio.client")
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

# -- the negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "response"),
    [
        # a browser's offer: both windows limited to 4 KiB
        (
            [b"permessage-deflate; client_max_window_bits"],
            b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        # no client_max_window_bits: the client's window is not answered
        ([b"permessage-deflate"], b"permessage-deflate; server_max_window_bits=12"),
        # smaller windows asked for are kept; larger ones come down to 12
        (
            [b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"],
            b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        ),
        (
            [b"permessage-deflate; server_max_window_bits=15"],
            b"permessage-deflate; server_max_window_bits=12",
        ),
        # quoted values, odd case and spacing
        (
            [b'Permessage-Deflate ;Server_Max_Window_Bits = "11"'],
            b"permessage-deflate; server_max_window_bits=11",
        ),
        (
            [b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            b"server_max_window_bits=12",
        ),
        # the first offer honoured: an 8-bit server window (zlib cannot) is declined
        (
            [b"permessage-deflate; server_max_window_bits=8, permessage-deflate"],
            b"permessage-deflate; server_max_window_bits=12",
        ),
        # other extensions skipped; several fields; empty list elements
        (
            [b"x-webkit-deflate-frame, ,", b"foo; bar=1, permessage-deflate"],
            b"permessage-deflate; server_max_window_bits=12",
        ),
        # declined: an unknown parameter, one given twice, a value where none is, a bad value
        ([b"permessage-deflate; level=9"], None),
        ([b"permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        ([b"permessage-deflate; server_no_context_takeover=1"], None),
        ([b"permessage-deflate; client_max_window_bits=16"], None),
        ([b"permessage-deflate; server_max_window_bits"], None),
        ([b"permessage-deflate; server_max_window_bits=012"], None),
        # a field that does not parse is no offer at all
        ([b"permessage-deflate; =1"], None),
        ([b'permessage-deflate; a="unterminated'], None),
        ([b"permessage-deflate permessage-deflate"], None),
        ([], None),
        ([b"x-other"], None),
    ],
)
def test_the_offer_honoured_and_the_answer(values: list[bytes], response: bytes | None) -> None:
    agreement = negotiate(values)
    assert (None if agreement is None else agreement.response()) == response


def test_offers_parse_as_rfc_6455_says() -> None:
    assert offers('a; b; c="x\\"y", d ;e=1 , ') == [
        ("a", [("b", None), ("c", 'x"y')]),
        ("d", [("e", "1")]),
    ]
    with pytest.raises(Malformed):
        offers("a; b=")
    with pytest.raises(Malformed):
        offers("a b")


# -- compression and inflation -----------------------------------------------------------------

messages_strategy = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.integers(0, 20_000).map(lambda n: b"abc" * n),
    ),
    max_size=6,
)


def inflate(decompressor: Any, payload: bytes) -> bytes:
    out: bytes = decompressor.decompress(payload + TAIL)
    return out


@given(messages_strategy, st.booleans(), st.sampled_from([9, 12, 15]))
def test_what_the_server_compresses_inflates_back(
    messages: list[bytes], no_context: bool, bits: int
) -> None:
    deflate = Deflate(Agreement(server_bits=bits, server_no_context=no_context))
    decompressor = zlib.decompressobj(-bits)  # (a client's: the window agreed on)
    for message in messages:
        if no_context:
            decompressor = zlib.decompressobj(-bits)  # (no history may be needed)
        assert inflate(decompressor, deflate.compress(message)) == message


def test_compression_keeps_its_context_across_messages() -> None:
    deflate = Deflate(Agreement())
    message = b'{"event": "tick", "symbol": "STWR", "price": 101.25}' * 4
    first, second = deflate.compress(message), deflate.compress(message)
    assert len(second) < len(first) < len(message)
    fresh = Deflate(Agreement(server_no_context=True))
    assert len(fresh.compress(message)) == len(fresh.compress(message)) == len(first)


class Client:
    """A client's compressor (context kept across messages, as browsers do)."""

    def __init__(self, bits: int = 12) -> None:
        self.compressor = zlib.compressobj(9, zlib.DEFLATED, -bits)

    def compress(self, data: bytes) -> bytes:
        out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def frames(self, opcode: int, data: bytes, pieces: int) -> bytes:
        """One compressed message in ``pieces`` frames (``RSV1`` on the first only)."""
        payload = self.compress(data)
        step = max(1, -(-len(payload) // pieces))
        parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        wire = b""
        for index, part in enumerate(parts):
            wire += client_frame(
                opcode if index == 0 else CONTINUATION,
                part,
                fin=index == len(parts) - 1,
                rsv1=index == 0,
            )
        return wire


def agreed(protocol: Recorded | None = None, bits: int = 12) -> Recorded:
    protocol = Recorded() if protocol is None else protocol
    protocol.deflate = Deflate(Agreement(client_bits=bits, client_bits_offered=True))
    return protocol


@given(
    st.lists(
        st.tuples(
            st.one_of(st.text(max_size=300), st.binary(max_size=300)),
            st.integers(1, 4),
            st.booleans(),
        ),
        max_size=5,
    ),
    st.lists(st.integers(1, 5_000), max_size=10),
)
def test_a_compressed_session_under_any_fragmentation_and_chunking(
    messages: list[tuple[str | bytes, int, bool]], cuts: list[int]
) -> None:
    client = Client()
    wire = b""
    for message, pieces, compressed in messages:
        opcode, data = (TEXT, message.encode()) if isinstance(message, str) else (BINARY, message)
        if compressed:
            wire += client.frames(opcode, data, pieces)
        else:  # (a message may go uncompressed in a session that agreed)
            wire += client_frame(opcode, data)
        wire += client_frame(PING, b"!")  # (control frames are never compressed)
    protocol, transport = session(chunked(wire, cuts), agreed())
    assert protocol.messages == [message for message, _, _ in messages]
    assert protocol.endings == []
    assert [f.header.opcode for f in frames_of(transport.data)] == [10] * len(messages)


def test_the_session_sends_compressed_messages() -> None:
    protocol, transport = session([], agreed())
    protocol.sendMessage("hello " * 100)
    protocol.sendMessage(b"\x00" * 1000)
    protocol.sendMessage("")
    sent = frames_of(transport.data)
    assert [(f.header.opcode, f.header.rsv) for f in sent] == [(TEXT, 4), (BINARY, 4), (TEXT, 4)]
    decompressor = zlib.decompressobj(-12)
    assert [inflate(decompressor, f.payload) for f in sent] == [
        b"hello " * 100,
        b"\x00" * 1000,
        b"",
    ]
    assert len(transport.data) < 100


def status(protocol: Recorded) -> list[int]:
    return [code for code, _ in protocol.endings]


def test_a_compressed_bomb_costs_the_limit_not_its_expansion() -> None:
    class Limited(Recorded):
        max_message = 1 << 20

    client = Client()
    bomb = client.frames(BINARY, b"\x00" * (64 << 20), 1)  # 64 MiB in about 64 KiB
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        protocol, transport = session([bomb], agreed(Limited()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status(protocol) == [1009]
    assert protocol.messages == []
    assert transport.closed
    assert peak < 8 << 20, peak  # (the limit and the bytes read; never the 64 MiB)


def test_a_fragmented_compressed_message_over_the_limit_is_1009() -> None:
    class Limited(Recorded):
        max_message = 1000

    protocol, _ = session([Client().frames(TEXT, b"a" * 1001, 3)], agreed(Limited()))
    assert status(protocol) == [1009]
    protocol, _ = session([Client().frames(TEXT, b"a" * 1000, 3)], agreed(Limited()))
    assert protocol.messages == ["a" * 1000]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        # data that does not inflate
        (client_frame(TEXT, b"\xff\xff\xff", rsv1=True), 1007),
        # inflated text that is not UTF-8
        (Client().frames(TEXT, b"\xff\xfe", 1), 1007),
        # RSV1 on a continuation (refused from its header)
        (
            client_frame(TEXT, b"a", fin=False) + client_frame(CONTINUATION, b"b", rsv1=True),
            1002,
        ),
    ],
)
def test_what_a_compressed_session_refuses(wire: bytes, code: int) -> None:
    protocol, transport = session([wire], agreed())
    assert status(protocol) == [code]
    assert int.from_bytes(frames_of(transport.data)[-1].payload[:2], "big") == code
    assert transport.closed


def test_rsv1_without_the_agreement_is_refused_from_the_header() -> None:
    wire = Client().frames(TEXT, b"x" * 5000, 1)
    protocol, transport = session([wire[:8]])  # (the header and mask, none of the payload)
    assert status(protocol) == [1002]
    assert transport.closed


@pytest.mark.parametrize("opcode", [CONTINUATION, PING, CLOSE])
def test_the_grammar_takes_rsv1_only_on_a_messages_first_frame(opcode: int) -> None:
    header = bytes([0x80 | 0x40 | opcode, 0x80])
    with pytest.raises(MalformedError, match="RSV1 on a continuation or control"):
        read_header(header, 0, 125, deflate=True)
    for first in (0x80 | 0x20 | TEXT, 0x80 | 0x10 | BINARY):  # (RSV2, RSV3: never)
        with pytest.raises(MalformedError, match="RSV bits"):
            read_header(bytes([first, 0x80]), 0, 125, deflate=True)
    parsed = client_frames(125, deflate=True).parse(client_frame(TEXT, b"z", rsv1=True))
    assert parsed.rsv1 and parsed.payload == b"z"
    assert client_frames(125, deflate=True).describe().endswith("permessage-deflate")


# -- real clients ------------------------------------------------------------------------------


class Echo(Recorded):
    def messageReceived(self, message: str | bytes) -> None:
        self.sendMessage(message)


async def handle(request: Request, response: Response) -> None:
    """An echo; ``/plain`` upgrades without offering the protocol to accept_fields."""
    assert handshake_refusal(request) is None
    echo = Echo()
    if request.target == b"/plain":
        await response.upgrade(echo, accept_fields(request))
    else:
        await response.upgrade(echo, accept_fields(request, protocol=echo))


async def starlette_like(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI echo; ``/own`` answers ``Sec-WebSocket-Extensions`` itself."""
    if scope["type"] != "websocket":
        return
    await receive()
    headers = [(b"sec-websocket-extensions", b"x-own")] if scope["path"] == "/own" else []
    await send({"type": "websocket.accept", "headers": headers})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text")})


def negotiated(ws: Any) -> list[Any]:
    return [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]


MESSAGES = [f'{{"id": {i}, "status": "ok", "items": ["alpha", "beta"]}}' for i in range(50)]


async def round_trips(uri: str, **options: Any) -> list[Any]:
    """Send MESSAGES and a big one, each echoed; the extension negotiated."""
    async with websockets_client.connect(uri, **options) as ws:
        for message in MESSAGES:
            await ws.send(message)
            assert await ws.recv() == message
        big = "statewire " * 50_000
        await ws.send(big)
        assert await ws.recv() == big
        return negotiated(ws)


def served(factory: Any, client: Any) -> None:
    async def main(reactor: Reactor) -> None:
        port = await listen(reactor, factory)
        await asyncio.wait_for(client(port), 30)

    scenario(main, timeout=60)


def test_a_websocket_client_compresses_with_the_library_session() -> None:
    async def client(port: int) -> None:
        base = f"ws://127.0.0.1:{port}"
        extensions = await round_trips(base + "/")
        assert len(extensions) == 1
        assert extensions[0].remote_max_window_bits == 12  # (the server's window)
        assert extensions[0].local_max_window_bits == 12  # (the client's, as answered)
        # every parameter a client may ask for
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=10,
            client_max_window_bits=9,
        )
        extensions = await round_trips(base + "/", extensions=[factory])
        assert extensions[0].remote_no_context_takeover
        assert extensions[0].remote_max_window_bits == 10
        assert extensions[0].local_max_window_bits == 9
        # no offer, or a server that does not pass the protocol: no extension
        assert await round_trips(base + "/", compression=None) == []
        assert await round_trips(base + "/plain") == []

    served(HTTPFactory(handle), client)


def test_asgi_agrees_as_uvicorn_does_unless_told_not_to() -> None:
    async def client(port: int) -> None:
        assert len(await round_trips(f"ws://127.0.0.1:{port}/")) == 1
        # the application's own answer is the only one
        head = await asyncio.to_thread(raw_handshake, port, b"/own")
        assert b"x-own" in head and b"permessage-deflate" not in head

    served(asgi(starlette_like, lifespan="off"), client)

    async def off(port: int) -> None:
        assert await round_trips(f"ws://127.0.0.1:{port}/") == []

    served(asgi(starlette_like, lifespan="off", ws_per_message_deflate=False), off)


def test_the_echo_examples_replies_are_compressed_on_the_wire() -> None:
    """A raw client offering permessage-deflate: the echo of a compressible message comes
    back with RSV1 and smaller than the message."""

    async def client(port: int) -> None:
        message = b"abcdefgh" * 1000
        reply = await asyncio.to_thread(raw_exchange, port, message)
        (sent,) = frames_of(reply)
        assert sent.header.rsv == 4 and sent.header.opcode == BINARY
        assert len(sent.payload) < 200
        assert inflate(zlib.decompressobj(-12), sent.payload) == message

    served(HTTPFactory(handle), client)


def raw_handshake(port: int, path: bytes, sock: socket.socket | None = None) -> bytes:
    """A handshake offering permessage-deflate (on ``sock``, else on a connection of its
    own, closed after): the response's head."""
    key = base64.b64encode(b"0123456789abcdef")
    handshake = (
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    if sock is None:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as own:
            return raw_handshake(port, path, own)
    sock.sendall(handshake)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += recv_exactly(sock, 1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return head


def raw_exchange(port: int, message: bytes) -> bytes:
    """Handshake, send ``message`` uncompressed, return the one frame that comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        head = raw_handshake(port, b"/", sock)
        assert b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12" in head
        sock.sendall(client_frame(BINARY, message))
        first = recv_exactly(sock, 2)
        length = first[1] & 0x7F
        extra = {126: 2, 127: 8}.get(length, 0)
        more = recv_exactly(sock, extra)
        if extra:
            length = int.from_bytes(more, "big")
        return first + more + recv_exactly(sock, length)


# -- what the first review found --------------------------------------------------------------


def finished(data: bytes) -> bytes:
    """``data`` as a whole deflate stream, ended by a final block (as a client may send)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    return compressor.compress(data) + compressor.flush()


def fragments(opcode: int, payload: bytes, cuts: list[int]) -> bytes:
    """A compressed message's ``payload`` in frames cut at ``cuts`` (RSV1 on the first)."""
    parts = chunked(payload, cuts) if payload else [b""]
    return b"".join(
        client_frame(
            opcode if index == 0 else CONTINUATION,
            part,
            fin=index == len(parts) - 1,
            rsv1=index == 0,
        )
        for index, part in enumerate(parts)
    )


@given(
    st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.integers(1, 400), max_size=5),
)
def test_a_message_of_several_deflate_streams_under_any_fragmentation(
    streams: list[bytes], last_ended: bool, cuts: list[int]
) -> None:
    """A client may end its deflate stream inside a message (a final block) and begin a
    new one: the message is every stream's bytes, however its frames are cut, and the
    next message inflates too."""
    payload = b"".join(finished(data) for data in streams[:-1])
    payload += finished(streams[-1]) if last_ended else Client().compress(streams[-1])
    wire = fragments(BINARY, payload, cuts) + Client().frames(TEXT, b"next", 1)
    protocol, _ = session([wire], agreed())
    assert protocol.endings == []
    assert protocol.messages == [b"".join(streams), "next"]


def test_a_final_block_then_an_empty_last_fragment_leaves_the_next_message_whole() -> None:
    wire = (
        client_frame(TEXT, finished(b"hello"), fin=False, rsv1=True)
        + client_frame(CONTINUATION, b"")
        + Client().frames(TEXT, b"second message", 1)
    )
    protocol, _ = session([wire], agreed())
    assert protocol.messages == ["hello", "second message"]
    assert protocol.endings == []


def test_an_empty_compressed_message_is_the_empty_message() -> None:
    wire = client_frame(TEXT, b"", rsv1=True) + Client().frames(TEXT, b"A" * 100, 1)
    protocol, _ = session([wire], agreed())
    assert protocol.messages == ["", "A" * 100]


def test_bytes_after_a_final_block_that_do_not_inflate_are_1007() -> None:
    wire = client_frame(BINARY, finished(b"hello") + b"GARBAGE\xff\xff", rsv1=True)
    protocol, _ = session([wire], agreed())
    assert protocol.messages == []
    assert status(protocol) == [1007]


def test_an_incompressible_message_goes_uncompressed_its_context_kept() -> None:
    import os

    protocol, transport = session([], agreed())
    noise = os.urandom(100_000)
    protocol.sendMessage("hello " * 50)
    protocol.sendMessage(noise)
    protocol.sendMessage("hello " * 50)
    sent = frames_of(transport.data)
    assert [f.header.rsv for f in sent] == [4, 0, 4]
    assert sent[1].payload == noise
    client = zlib.decompressobj(-12)  # (sees the compressed messages only)
    assert inflate(client, sent[0].payload) == inflate(client, sent[2].payload)
    assert len(sent[2].payload) < len(sent[0].payload)  # (the context was kept)


class Headed:
    """A request with the fields of a handshake offering permessage-deflate."""

    def __init__(self) -> None:
        from statewire.protocols.http import Headers

        self.headers = Headers(
            [
                (b"Sec-WebSocket-Key", base64.b64encode(b"0123456789abcdef")),
                (b"Sec-WebSocket-Extensions", b"permessage-deflate"),
            ]
        )


def test_accept_fields_takes_its_extra_fields_from_an_iterator() -> None:
    extra = iter([(b"X-App", b"1"), (b"Set-Cookie", b"a=b")])
    session_ = Echo()
    fields = accept_fields(Headed(), extra=extra, protocol=session_)
    assert fields[-2:] == [(b"X-App", b"1"), (b"Set-Cookie", b"a=b")]
    assert session_.deflate is not None
    own = iter([("Sec-WebSocket-Extensions", "x-own")])
    plain = Echo()
    assert accept_fields(Headed(), extra=own, protocol=plain)[-1] == (
        "Sec-WebSocket-Extensions",
        "x-own",
    )
    assert plain.deflate is None
