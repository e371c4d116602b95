"""The framer's RESP reply decoder (statewire/framing/_replies.py, for grammars.resp):
the same replies as the grammar under any chunking, the same values and error for any
bytes, no byte lost across a switch, hostile replies refused as framing errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_resp_replies import HOSTILE, values

from grammars import raw
from grammars.resp import resp
from statewire.framing import Framer, FramingError
from statewire.testing.strategies import chunked


@given(data=st.data(), replies=st.lists(values, min_size=1, max_size=6))
def test_any_chunking_gives_each_reply_as_one_frame(
    data: st.DataObject, replies: list[Any]
) -> None:
    wire = b"".join(resp(3).encode(v) for v in replies)
    got: list[Any] = []
    framer = Framer(resp(), got.append)
    for chunk in data.draw(chunked(wire)):
        framer.feed(chunk)
    assert got == replies and framer.buffered == b""


@given(data=st.data(), wire=st.binary(max_size=60))
def test_any_bytes_frame_alike_however_cut(data: st.DataObject, wire: bytes) -> None:
    def outcome(chunks: list[bytes]) -> tuple[Any, ...]:
        got: list[Any] = []
        errors: list[FramingError] = []
        framer = Framer(resp(), got.append, on_error=errors.append)
        unread = b""
        for chunk in chunks:
            if framer.error is not None:  # it stopped: what follows stays unread
                unread += chunk
            else:
                framer.feed(chunk)
        return (
            repr(got),
            [(type(e), e.offset) for e in errors],
            framer.buffered + unread,
        )

    assert outcome(data.draw(chunked(wire))) == outcome([wire])


@given(data=st.data(), replies=st.lists(values, min_size=2, max_size=6))
def test_a_switch_after_a_reply_keeps_every_byte(data: st.DataObject, replies: list[Any]) -> None:
    wire = b"".join(resp(3).encode(v) for v in replies)
    got: list[Any] = []

    def on_frame(frame: Any) -> None:
        got.append(frame)
        if len(got) == 1:
            framer.switch(raw())

    framer = Framer(resp(), on_frame)
    for chunk in data.draw(chunked(wire)):
        framer.feed(chunk)
    assert got[0] == replies[0]
    assert b"".join(got[1:]) == wire[len(resp(3).encode(replies[0])) :]


@pytest.mark.parametrize(("wire", "error"), HOSTILE, ids=[w[:12].hex() for w, _ in HOSTILE])
def test_a_hostile_reply_is_a_framing_error(wire: bytes, error: type) -> None:
    got: list[Any] = []
    errors: list[FramingError] = []
    Framer(resp(), got.append, on_error=errors.append).feed(b"+OK\r\n" + wire)
    assert len(got) == 1 and len(errors) == 1 and errors[0].offset >= 5
