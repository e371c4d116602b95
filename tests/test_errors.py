"""One root for protocol errors, and whose fault each is (as h11's errors say)."""

from __future__ import annotations

import pytest

import statewire.machine as machine
from statewire.error import LocalProtocolError, ProtocolError, RemoteProtocolError
from statewire.framing import (
    FrameTooLong,
    FramingError,
    MalformedFrame,
    TruncatedFrame,
    decode,
)
from statewire.machine import UnexpectedInput, UnroutableFrame


@pytest.mark.parametrize(
    "kind", [FramingError, FrameTooLong, MalformedFrame, TruncatedFrame, UnexpectedInput]
)
def test_the_peers_faults_are_remote_protocol_errors(kind: type) -> None:
    assert issubclass(kind, RemoteProtocolError)
    assert issubclass(kind, ProtocolError)
    assert not issubclass(kind, LocalProtocolError)


def test_our_faults_are_local_protocol_errors() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_the_old_names_still_import() -> None:
    assert machine.RemoteProtocolError is RemoteProtocolError
    assert machine.LocalProtocolError is LocalProtocolError
    assert machine.ProtocolError is ProtocolError
    assert issubclass(UnroutableFrame, RemoteProtocolError)


def test_a_framing_error_is_caught_as_a_remote_error() -> None:
    from grammars import line

    with pytest.raises(RemoteProtocolError) as raised:
        decode(line(max_length=4), [b"far too long\r\n"])
    assert isinstance(raised.value, FrameTooLong)
    assert raised.value.state is None and raised.value.offset == 4


def test_a_machine_refusal_names_its_state() -> None:
    error = UnexpectedInput(state="ready", input="put", frame=b"PUT")
    assert (error.state, error.input, error.frame) == ("ready", "put", b"PUT")
