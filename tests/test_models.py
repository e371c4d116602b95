"""Model-based tests generated from each protocol's own diagram (statewire.testing.model):
every example and helper protocol, every transition reached, and shortest paths to every
state and edge; then the kit itself, shown to catch deliberately broken protocols."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest
from automat import TypeMachineBuilder
from hypothesis import settings

from grammars import line
from statewire import basic
from statewire.declarative import MachineProtocol
from statewire.machine import Timeout, by_verb
from statewire.testing import assert_chunking_invariant
from statewire.testing.model import check_path, check_protocol, shortest_paths

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import answer
import keyvalue
import logging_protocol
import upload


class Lines(basic.LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        pass

    def rawDataReceived(self, data: bytes) -> None:
        pass


class OnlyLines(basic.LineOnlyReceiver):
    def lineReceived(self, line: bytes) -> None:
        pass


class Strings(basic.NetstringReceiver):
    def stringReceived(self, string: bytes) -> None:
        pass


def _int_n(base: type) -> type:
    return type(f"Counting{base.__name__}", (base,), {"stringReceived": lambda self, s: None})


class Blocks(basic.StatefulProtocol):
    def getInitialState(self) -> tuple[Any, int]:
        return self.header, 1

    def header(self, data: bytes) -> tuple[Any, int]:
        return self.body, 1 + data[0] % 5

    def body(self, data: bytes) -> tuple[Any, int]:
        return self.header, 1


class Log(logging_protocol.LogfileFactory):
    """The seed's factory, writing to memory."""

    def __init__(self) -> None:
        self.fp = io.BytesIO()


#: (protocol, factory made per connection)
PROTOCOLS: list[tuple[type, Any]] = [
    (upload.UploadServer, upload.UploadFactory),
    (keyvalue.KeyValue, keyvalue.KeyValueFactory),
    (answer.Answer, None),
    (logging_protocol.LoggingProtocol, Log),
    (Lines, None),
    (OnlyLines, None),
    (Strings, None),
    (_int_n(basic.Int8StringReceiver), None),
    (_int_n(basic.Int16StringReceiver), None),
    (_int_n(basic.Int32StringReceiver), None),
    (Blocks, None),
]
IDS = [protocol.__name__ for protocol, _ in PROTOCOLS]


@pytest.mark.parametrize(("protocol", "factory"), PROTOCOLS, ids=IDS)
def test_every_transition_is_exercised_and_followed(protocol: type, factory: Any) -> None:
    check_protocol(protocol, factory=factory, require_coverage=True)


PATHS = [
    pytest.param(protocol, factory, path, id=f"{protocol.__name__}: {path.id}")
    for protocol, factory in [*PROTOCOLS[:2], PROTOCOLS[4]]
    for path in shortest_paths(protocol)
]


@pytest.mark.parametrize(("protocol", "factory", "path"), PATHS)
def test_shortest_path(protocol: type, factory: Any, path: Any) -> None:
    check_path(protocol, path, factory=factory)


def test_shortest_paths_reach_every_state_and_edge_with_timeouts() -> None:
    paths = {path.id: path for path in shortest_paths(upload.UploadServer)}
    assert {f"state {s}" for s in ("anonymous", "ready", "receiving", "closed")} <= set(paths)
    body = paths["receiving --body--> ready"]
    assert [step.input for step in body.steps] == ["user", "put", "body"]
    timeout = paths["receiving --idle--> closed"]
    assert [step.kind for step in timeout.steps] == ["frame", "frame", "timeout"]
    assert len(paths["state closed"].steps) == 1  # QUIT or the timeout at once


# -- the kit catches broken protocols ---------------------------------------------------------


class Door(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def wait(self) -> None: ...


#: report the first bug found (not a group of every distinct one)
ONE_BUG = settings(report_multiple_bugs=False)


def door(extra: bool = False, missing: bool = False) -> type:
    builder = TypeMachineBuilder(Door, MachineProtocol)
    shut = builder.state("shut")
    ajar = builder.state("ajar")
    shut.upon(Door.open).to(ajar).returns(None)
    if not missing:
        ajar.upon(Door.close).to(shut).returns(None)
    ajar.upon(Door.wait).to(shut).returns(None)
    if extra:
        shut.upon(Door.close).loop().returns(None)
    commands = by_verb({b"OPEN": Door.open, b"CLOSE": Door.close})
    return type(
        "Door",
        (MachineProtocol,),
        {
            "machine": builder.build(),
            "framings": {shut: line(b"\n"), ajar: line(b"\n")},
            "routes": {shut: commands, ajar: commands},
            "timeouts": {ajar: Timeout(5, Door.wait)},
        },
    )


def test_the_correct_door_passes() -> None:
    assert check_protocol(door(), spec=door(), require_coverage=True) == set()


def test_a_missing_transition_is_caught() -> None:
    with pytest.raises(AssertionError, match="was refused"):
        check_protocol(door(missing=True), spec=door(), settings=ONE_BUG)


def test_a_state_accepting_an_input_the_diagram_refuses_is_caught() -> None:
    with pytest.raises(AssertionError, match="not accepted in 'shut' but was not refused"):
        check_protocol(door(extra=True), spec=door(), settings=ONE_BUG)


def test_a_framer_losing_a_byte_between_reads_is_caught() -> None:
    class Leaky(door()):  # type: ignore[misc]
        reads = 0

        def dataReceived(self, data: bytes) -> None:
            self.reads += 1
            super().dataReceived(data[1:] if self.reads % 3 == 0 else data)

    with pytest.raises(AssertionError):
        check_protocol(Leaky, spec=door(), settings=ONE_BUG)


def test_unreached_transitions_are_reported() -> None:
    few = settings(max_examples=1, stateful_step_count=1, derandomize=True, deadline=None)
    missed = check_protocol(door(), settings=few)
    assert missed  # one step cannot reach every edge
    with pytest.raises(AssertionError, match="never exercised"):
        check_protocol(door(), settings=few, require_coverage=True)


@pytest.mark.parametrize(("protocol", "factory"), PROTOCOLS, ids=IDS)
def test_sessions_do_not_depend_on_the_reads(protocol: type, factory: Any) -> None:
    assert_chunking_invariant(protocol, factory=factory)


def test_a_protocol_that_depends_on_read_boundaries_is_caught() -> None:
    class PerRead(door()):  # type: ignore[misc]
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(b"read\\n")  # one reply per read, not per frame
            super().dataReceived(data)

    with pytest.raises(AssertionError, match="differs"):
        assert_chunking_invariant(PerRead)


def test_inputs_that_need_arguments_are_not_called_bare() -> None:
    class Job(Protocol):
        def start(self, line: bytes) -> None: ...
        def fail(self, why: bytes) -> None: ...

    builder = TypeMachineBuilder(Job, MachineProtocol)
    idle = builder.state("idle")
    failed = builder.state("failed")

    @idle.upon(Job.start).loop()
    def start(machine: Job, core: MachineProtocol, text: bytes) -> None:
        if text == b"bad":
            machine.fail(text)  # internal: only outputs call it, with an argument

    @idle.upon(Job.fail).to(failed)
    def fail(machine: Job, core: MachineProtocol, why: bytes) -> None:
        core.transport.write(b"failed: " + why)

    job = type(
        "Job",
        (MachineProtocol,),
        {"machine": builder.build(), "framings": {idle: line(b"\n")}, "routes": {idle: Job.start}},
    )
    assert check_protocol(job) == set()  # `fail` is not driven directly, so nothing is missed
