"""One root for protocol errors, and whose fault each is (as h11's errors say)."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

import statewire.machine as machine
from grammars import MalformedError, TooLongError, TruncatedError
from statewire.error import LocalProtocolError, ProtocolError, RemoteProtocolError
from statewire.framing import (
    FrameTooLong,
    FramingError,
    MalformedFrame,
    TruncatedFrame,
    decode,
)
from statewire.machine import BadArguments, UnexpectedInput, UnroutableFrame


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


# -- pickling: errors cross processes (a pool's worker, a log handler) -----------------------

PICKLED = [
    FrameTooLong("too long", offset=3, grammar=None, limit=2),
    MalformedFrame("bad", offset=1),
    TruncatedFrame("cut", offset=9),
    UnexpectedInput(state="greeted", input="data", frame=b"DATA"),
    BadArguments("no", state="s", frame=b"q"),
    TooLongError("long", limit=3, offset=4),
    TruncatedError("short", needed=3),
    MalformedError("odd", offset=0, path="(parsing)"),
]


@pytest.mark.parametrize("error", PICKLED, ids=lambda error: type(error).__name__)
def test_errors_with_keyword_only_arguments_pickle_whole(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args and str(copy) == str(error)
    assert vars(copy) == vars(error)


def _raise_framing_error(offset: int) -> FrameTooLong:
    return FrameTooLong("too long", offset=offset, limit=2)


def test_an_error_returned_by_a_pool_worker_arrives() -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply_async(_raise_framing_error, (7,))
        error = result.get(timeout=60)  # (before: the pool's result thread died, and this hung)
    assert isinstance(error, FrameTooLong) and error.offset == 7 and error.limit == 2
