"""grammars.websocket: server frames round-trip through the frame grammar, client frames
are refused from their header, masking is its own inverse, close payloads fit a control
frame; and statewire.protocols.websocket.WebSocket fed a session under any chunking."""

from __future__ import annotations

from typing import Any

import pytest
from construct import ConstructError
from hypothesis import given
from hypothesis import strategies as st
from websocket_helpers import Kept, Recorded, client_frame, frames_of, session

from grammars import TooLongError, TruncatedError
from grammars.websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FRAME,
    PING,
    TEXT,
    Frame,
    client_frames,
    close_code_allowed,
    close_payload,
    frame,
    unmask,
)


@given(
    st.sampled_from([CONTINUATION, TEXT, BINARY]),
    st.one_of(st.binary(max_size=300), st.integers(125, 70_000).map(lambda n: b"z" * n)),
    st.booleans(),
)
def test_a_server_frame_parses_back(opcode: int, payload: bytes, fin: bool) -> None:
    parsed = FRAME.parse(frame(opcode, payload, fin))
    assert (parsed.header.opcode, parsed.header.fin, parsed.payload) == (opcode, fin, payload)
    assert not parsed.header.masked


@pytest.mark.parametrize(("size", "length7"), [(125, 125), (126, 126), (65535, 126), (65536, 127)])
def test_the_shortest_length_form(size: int, length7: int) -> None:
    assert frame(BINARY, b"x" * size)[1] == length7


@given(st.binary(min_size=4, max_size=4), st.binary(max_size=200))
def test_masking_is_its_own_inverse(mask: bytes, payload: bytes) -> None:
    assert unmask(mask, unmask(mask, payload)) == payload


@given(st.binary(max_size=200), st.sampled_from([TEXT, BINARY, PING]))
def test_a_client_frame_parses(payload: bytes, opcode: int) -> None:
    if opcode == PING:
        payload = payload[:125]
    wire = client_frame(opcode, payload)
    assert client_frames(200).parse(wire) == Frame(True, opcode, payload, len(wire))


@given(st.sampled_from([CONTINUATION, TEXT, BINARY]), st.binary(max_size=70_000), st.booleans())
def test_client_frames_round_trip(opcode: int, payload: bytes, fin: bool) -> None:
    grammar = client_frames(70_000)
    parsed = grammar.parse(grammar.build((fin, opcode, payload)))
    assert parsed[:3] == (fin, opcode, payload)


def test_a_frame_cut_short_is_truncated() -> None:
    with pytest.raises(TruncatedError):
        client_frames(200).parse(client_frame(TEXT, b"abc")[:-1])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\x81\x05", "client frames must be masked"),
        (b"\xc1\x85", "RSV bits without an extension"),
        (b"\x83\x85", "unknown opcode"),
        (b"\x09\x85", "control frames are short and not fragmented"),
        (b"\x89\xfe\x00\x80", "control frames are short and not fragmented"),
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big"), "a 64-bit length with its top bit set"),
    ],
)
def test_a_client_header_breaking_a_rule_is_refused_before_its_payload(
    header: bytes, reason: str
) -> None:
    with pytest.raises(ConstructError, match=reason):
        client_frames(1 << 20).parse(header + b"\x00" * 20)


def test_client_frames_bound_the_payload() -> None:
    grammar = client_frames(1000)
    assert grammar.parse(client_frame(BINARY, b"y" * 1000)).payload == b"y" * 1000
    with pytest.raises(TooLongError):
        grammar.parse(client_frame(BINARY, b"y" * 1001)[:8])  # (from its header)


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        (999, False),
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1014, True),
        (1015, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
    ],
)
def test_close_codes(code: int, allowed: bool) -> None:
    assert close_code_allowed(code) is allowed


@given(st.text(max_size=200))
def test_a_close_payload_fits_a_control_frame(reason: str) -> None:
    payload = close_payload(1000, reason)
    assert len(payload) <= 125
    assert reason.startswith(payload[2:].decode("utf-8"))  # (cut between characters)


# -- the session, in memory ----------------------------------------------------------------


SESSION = (
    client_frame(TEXT, "héllo".encode())
    + client_frame(BINARY, b"\x00\xff", fin=False)
    + client_frame(PING, b"are you there")
    + client_frame(CONTINUATION, b"\x01", fin=False)
    + client_frame(CONTINUATION, b"\x02")
    + client_frame(CLOSE, (4001).to_bytes(2, "big") + b"bye")
)


@given(st.lists(st.integers(1, len(SESSION)), max_size=12))
def test_a_session_under_any_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [SESSION[a:b] for a, b in zip([0, *points], [*points, len(SESSION)], strict=True)]
    protocol, transport = session(chunks)
    assert protocol.messages == ["héllo", b"\x00\xff\x01\x02"]
    assert protocol.endings == [(4001, "bye")]
    assert transport.data == frame(10, b"are you there") + frame(CLOSE, (4001).to_bytes(2, "big"))
    assert transport.closed


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(TEXT, b"\xff\xfe"), 1007),
        (client_frame(CONTINUATION, b"x"), 1002),
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(CLOSE, b"\x03"), 1002),
        (client_frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
        (client_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
        (client_frame(TEXT, b"x", mask=b"")[:1] + b"\x01x", 1002),
    ],
)
def test_what_a_session_refuses(wire: bytes, code: int) -> None:
    protocol, transport = session([wire])
    assert [ending[0] for ending in protocol.endings] == [code]
    (sent,) = frames_of(transport.data)
    assert sent.header.opcode == CLOSE
    assert int.from_bytes(sent.payload[:2], "big") == code
    assert transport.closed


def test_a_fragmented_message_over_the_limit_is_1009() -> None:
    class Small(Recorded):
        max_message = 10

    protocol, transport = Small(), Kept()
    protocol.makeConnection(transport)
    protocol.dataReceived(client_frame(TEXT, b"123456", fin=False))
    protocol.dataReceived(client_frame(CONTINUATION, b"789012"))
    assert protocol.endings == [(1009, "message too big")]
    assert protocol.messages == []


def test_a_frame_over_a_subclass_limit_is_1009_from_its_header() -> None:
    class Small(Recorded):
        max_message = 10

    protocol, transport = Small(), Kept()
    protocol.makeConnection(transport)
    protocol.dataReceived(client_frame(BINARY, b"x" * 11)[:6])  # (the header and mask)
    assert [code for code, _ in protocol.endings] == [1009]
    assert transport.closed


def test_sending_before_the_connection_and_closing() -> None:
    protocol, transport = Recorded(), Kept()
    protocol.sendMessage("early")
    protocol.sendMessage(b"\x01")
    protocol.makeConnection(transport)
    assert transport.data == frame(TEXT, b"early") + frame(BINARY, b"\x01")
    with pytest.raises(ValueError, match="close code 1005"):
        protocol.sendClose(1005)
    protocol.sendClose(3000, "done")
    protocol.sendMessage("after the close")  # (dropped)
    assert transport.data.endswith(frame(CLOSE, close_payload(3000, "done")))
    assert protocol.endings == [(3000, "done")]
    assert not transport.closed  # (the client's close frame is waited for)
    protocol.connectionLost(Exception("gone"))
    assert protocol.endings == [(3000, "done")]  # (once)
    transport.reactor.advance(60)
    assert not transport.closed  # (the wait ended with the connection)


def test_a_close_the_server_sent_waits_for_the_clients() -> None:
    """RFC 6455 §7.1.1: the server's close waits for the client's (messages meanwhile are
    dropped, pings not answered), then the connection closes; a client that does not
    answer is closed after close_timeout; a protocol error and a stop's 1001 close at
    once."""
    protocol, transport = session([])
    protocol.sendClose(1000, "bye")
    protocol.dataReceived(
        client_frame(TEXT, b"late") + client_frame(PING, b"?") + client_frame(BINARY, b"x", False)
    )
    assert protocol.messages == [] and not transport.closed
    sent = len(transport.data)
    protocol.dataReceived(client_frame(CLOSE, (1000).to_bytes(2, "big")))
    assert transport.closed and len(transport.data) == sent  # (no second close frame)
    assert protocol.endings == [(1000, "bye")]

    silent, kept = session([])
    silent.sendClose(3000)
    kept.reactor.advance(silent.close_timeout - 0.1)
    assert not kept.closed
    kept.reactor.advance(0.2)
    assert kept.closed and silent.endings == [(3000, "")]

    stopped, kept = session([])
    stopped.closeGracefully()
    assert kept.closed and stopped.endings == [(1001, "server going away")]

    failed, kept = session([client_frame(TEXT, b"\xff")])
    assert failed.endings[0][0] == 1007 and kept.closed


def test_a_connection_lost_without_a_close_is_1006() -> None:
    protocol, _ = session([client_frame(TEXT, b"hi")])
    protocol.connectionLost(Exception("gone"))
    assert protocol.endings == [(1006, "")]


# -- the framer's fast path against construct's own parse ---------------------------------

frames_strategy = st.lists(
    st.tuples(
        st.sampled_from([CONTINUATION, TEXT, BINARY, PING]),
        st.one_of(st.binary(max_size=130), st.integers(126, 70_000).map(lambda n: b"q" * n)),
        st.booleans(),
    ),
    max_size=6,
)


def framed(wire: bytes, cuts: list[int], fast: bool) -> tuple[list[Any], list[str]]:
    from statewire.framing import Framer

    got: list[Any] = []
    errors: list[str] = []
    framer = Framer(
        client_frames(65_536), got.append, on_error=lambda e: errors.append(e.message), fast=fast
    )
    points = sorted({c for c in cuts if 0 < c < len(wire)})
    for a, b in zip([0, *points], [*points, len(wire)], strict=True):
        if errors:
            break  # (the framer stopped there: feeding more raises its error)
        framer.feed(wire[a:b])
    return got, errors


@given(frames_strategy, st.lists(st.integers(0, 200_000), max_size=8), st.binary(max_size=12))
def test_the_fast_path_cuts_what_construct_parses(
    frames: list[tuple[int, bytes, bool]], cuts: list[int], tail: bytes
) -> None:
    wire = b"".join(
        client_frame(opcode, payload[:125] if opcode == PING else payload, fin or opcode == PING)
        for opcode, payload, fin in frames
    )
    wire += tail  # (anything: a frame begun, or one breaking a rule)
    fast = framed(wire, cuts, True)
    assert fast == framed(wire, [], False)
    assert fast[0][: len(frames)] == [
        Frame(
            fin or opcode == PING, opcode, payload[:125] if opcode == PING else payload, 0
        )._replace(wire=got.wire)
        for (opcode, payload, fin), got in zip(frames, fast[0], strict=False)
    ]
