"""The declared examples, in memory: what a session does never depends on how its bytes are
cut into reads (Invariant 1), bodies keep every byte across the line/raw switch
(Invariant 2), refused commands leave the state unchanged, and timeouts fire only in the
states that declare them."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statewire.testing.memory import Clock, StringTransport
from statewire.testing.strategies import chunkings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import keyvalue
import upload


def run(factory: Any, chunks: list[bytes]) -> tuple[bytes, str, bool, Any]:
    protocol = factory.buildProtocol(None)
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return transport.value(), protocol.machine_state, transport.disconnecting, protocol


# -- upload ---------------------------------------------------------------------------------

UPLOAD_COMMANDS = st.one_of(
    st.sampled_from([b"USER ann", b"GET a", b"GET b", b"QUIT", b"PUT a", b"PUT a x", b"HUH"]),
    st.tuples(st.sampled_from([b"a", b"b"]), st.binary(min_size=1, max_size=20)).map(
        lambda nb: b"PUT %s %d\r\n" % (nb[0], len(nb[1])) + nb[1]
    ),
)
UPLOAD_SESSIONS = st.lists(UPLOAD_COMMANDS, max_size=12).map(
    lambda commands: b"".join(
        c if c.startswith(b"PUT") and b"\r\n" in c else c + b"\r\n" for c in commands
    )
)


@given(st.data(), UPLOAD_SESSIONS)
def test_upload_does_not_depend_on_the_reads(data: st.DataObject, session: bytes) -> None:
    chunks = data.draw(chunkings(session))
    whole = run(upload.UploadFactory(), [session])
    cut = run(upload.UploadFactory(), chunks)
    assert cut[:3] == whole[:3]
    assert cut[3].factory.files == whole[3].factory.files


@given(st.binary(min_size=1, max_size=200), st.integers(1, 7))
def test_upload_bodies_keep_every_byte(body: bytes, step: int) -> None:
    session = b"USER ann\r\nPUT f %d\r\n" % len(body) + body + b"GET f\r\n"
    chunks = [session[i : i + step] for i in range(0, len(session), step)]
    out, state, closed, protocol = run(upload.UploadFactory(), chunks)
    assert protocol.factory.files == {b"f": body}
    assert out.endswith(b"213 %d\r\n" % len(body) + body)
    assert state == "ready" and not closed


@pytest.mark.parametrize("command", [b"PUT a 1", b"GET a"])
def test_upload_refuses_out_of_order_commands_and_stays(command: bytes) -> None:
    out, state, closed, _ = run(upload.UploadFactory(), [command + b"\r\n"])
    assert out == b"503 bad sequence of commands\r\n"
    assert state == "anonymous" and not closed


def test_upload_idle_timeout_fires_in_its_states_only() -> None:
    _, _, _, protocol = run(upload.UploadFactory(), [b"USER ann\r\nPUT f 3\r\nab"])
    clock = protocol.clock
    clock.advance(upload.IDLE_SECONDS - 1)
    assert protocol.machine_state == "receiving"
    clock.advance(2)
    assert protocol.machine_state == "closed" and protocol.transport.disconnecting
    clock.advance(1000)
    assert clock.pending() == []  # closed has no timeout


# -- keyvalue -------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


KEYS = st.sampled_from([b"k", b"key", b""])
REQUESTS = st.one_of(
    st.builds(lambda k: frame(b"G" + k), KEYS),
    st.builds(lambda k, v: frame(b"S" + k + b"\0" + v), KEYS, st.binary(max_size=30)),
    st.builds(lambda k: frame(b"D" + k), KEYS),
    st.builds(lambda k: frame(b"S" + k), KEYS),  # no separator: a bad request
    st.sampled_from([frame(b"Q"), frame(b"Z?"), frame(b"")]),
)


@given(st.data(), st.lists(REQUESTS, max_size=15).map(b"".join))
def test_keyvalue_does_not_depend_on_the_reads(data: st.DataObject, session: bytes) -> None:
    chunks = data.draw(chunkings(session))
    whole = run(keyvalue.KeyValueFactory(), [session])
    cut = run(keyvalue.KeyValueFactory(), chunks)
    assert cut[:3] == whole[:3]
    assert cut[3].factory.store == whole[3].factory.store


def test_keyvalue_oversize_prefix_is_refused_from_the_header() -> None:
    out, _, closed, protocol = run(keyvalue.KeyValueFactory(), [struct.pack("!I", 1 << 30)])
    assert closed and out.endswith(frame(b"\x02bad request"))
    assert len(protocol.machine_engine.buffered) == 4  # nothing of the announced body was kept
