"""Differential tests against Twisted's receivers: the same frames for the same reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grammars import line, netstring, prefixed
from statewire.framing import decode
from statewire.testing.strategies import chunked, from_grammar

basic = pytest.importorskip("twisted.protocols.basic")


def _twisted_frames(cls: type, method: str, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    receiver = type("R", (cls,), {method: lambda self, f: frames.append(f)})()

    class Transport:
        disconnecting = False

    receiver.makeConnection(Transport())
    for chunk in chunks:
        receiver.dataReceived(chunk)
    return frames


TWISTED_PEERS = [
    (line(b"\r\n", max_length=16384), "LineOnlyReceiver", "lineReceived"),
    (netstring(max_length=99999), "NetstringReceiver", "stringReceived"),
    (prefixed(4, max_length=99999), "Int32StringReceiver", "stringReceived"),
    (prefixed(2, max_length=99999), "Int16StringReceiver", "stringReceived"),
    (prefixed(1, max_length=99999), "Int8StringReceiver", "stringReceived"),
]


@pytest.mark.parametrize(("grammar", "peer", "method"), TWISTED_PEERS, ids=lambda p: str(p))
@given(data=st.data())
def test_same_frames_as_twisted(
    accel: str, grammar: Any, peer: str, method: str, data: st.DataObject
) -> None:
    values = data.draw(st.lists(from_grammar(grammar), max_size=6))
    wire = b"".join(grammar.build(v) for v in values)
    chunks = data.draw(chunked(wire))
    assert decode(grammar, chunks) == _twisted_frames(getattr(basic, peer), method, chunks)
