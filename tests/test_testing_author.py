"""The testing kit as a protocol author meets it: a memcached-style ``set`` (a command line,
then a block of the announced size) whose converter validates its numbers, frames given
per input, no Hypothesis warnings, a health-check failure that says what to pass, and
``HYPOTHESIS_PROFILE`` in a user's own project."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from automat import TypeMachineBuilder
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, HypothesisWarning

from grammars import fixed, line
from statewire.declarative import MachineProtocol
from statewire.machine import by_verb
from statewire.protocol import Factory
from statewire.testing import assert_chunking_invariant
from statewire.testing.model import Exchange, check_path, check_protocol, shortest_paths

ROOT = Path(__file__).resolve().parent.parent


class Commands(Protocol):
    def set(self, key: bytes, flags: int, exptime: int, size: int) -> None: ...
    def get(self, key: bytes) -> None: ...
    def block(self, data: bytes) -> None: ...


class Core(MachineProtocol):
    sends = line()


@dataclass
class Pending:
    key: bytes
    flags: int
    size: int


builder = TypeMachineBuilder(Commands, Core)
command = builder.state("command")
receiving = builder.state(
    "receiving", lambda machine, core, key, flags, exptime, size: Pending(key, flags, size)
)


@command.upon(Commands.set).to(receiving)
def start(machine: Commands, core: Core, key: bytes, flags: int, exptime: int, size: int) -> None:
    pass


@receiving.upon(Commands.block).to(command)
def stored(machine: Commands, core: Core, pending: Pending, block: bytes) -> None:
    core.factory.store[pending.key] = (pending.flags, block[:-2])
    core.send(b"STORED")


@command.upon(Commands.get).loop()
def get(machine: Commands, core: Core, key: bytes) -> None:
    if key in core.factory.store:
        flags, value = core.factory.store[key]
        core.send(b"VALUE %s %d %d" % (key, flags, len(value)))
        core.send(value)
    core.send(b"END")


def natural(word: bytes) -> int:
    number = int(word)
    if number < 0 or not word.isdigit():
        raise ValueError(word)
    return number


class Memcache(Core):
    machine = builder.build()
    framings = {
        command: line(max_length=2048),
        receiving: lambda protocol, pending: fixed(pending.size + 2),
    }
    routes = {
        command: by_verb(
            {
                b"set": (
                    Commands.set,
                    lambda k, f, e, s: (k, natural(f), natural(e), natural(s)),
                ),
                b"get": Commands.get,
            }
        ),
        receiving: Commands.block,
    }


class Store(Factory):
    protocol = Memcache

    def __init__(self) -> None:
        self.store: dict[bytes, tuple[int, bytes]] = {}


#: no health check suppressed but the ones about speed: a filter that refuses most draws
#: fails the run, as in a user's project without statewire's profiles
STRICT = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_numbers_are_generated_for_int_arguments() -> None:
    """``set``'s converter refuses words that are not numbers: with words drawn at random
    the model rarely reached ``receiving``; generated as numbers, every edge is walked."""
    missed = check_protocol(Memcache, factory=Store, settings=STRICT, require_coverage=True)
    assert missed == set()


def test_frames_keyed_by_input_and_no_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", HypothesisWarning)
        check_protocol(
            Memcache,
            factory=Store,
            settings=STRICT,
            frames={Commands.get: st.just(b"get a")},
        )
        assert_chunking_invariant(Memcache, factory=Store, frames={"get": st.just(b"get b")})


def test_a_failed_health_check_says_what_to_pass() -> None:
    class Picky(Memcache):
        routes = {
            command: by_verb(
                {
                    b"set": (Commands.set, lambda *words: _magic(words)),
                    b"get": Commands.get,
                }
            ),
            receiving: Commands.block,
        }

    path = next(p for p in shortest_paths(Picky) if p.goal == "state receiving")
    with pytest.raises(FailedHealthCheck, match=r"statewire: .*Pass frames=\{Commands\.input"):
        check_path(Picky, path, factory=Store, settings=STRICT)
    with pytest.raises(AssertionError, match=r"never exercised: command --set--> .*frames="):
        check_protocol(Picky, factory=Store, settings=STRICT, require_coverage=True)


def _magic(words: tuple[bytes, ...]) -> tuple[bytes, int, int, int]:
    if words != (b"magic", b"1", b"2", b"3"):
        raise ValueError(words)
    return b"magic", 1, 2, 3


@pytest.mark.parametrize(("value", "examples"), [("statewire-ci", 60), ("ci", 60), ("long", 2000)])
def test_hypothesis_profile_works_in_a_users_project(
    tmp_path: Path, value: str, examples: int
) -> None:
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            f"""
            from hypothesis import settings

            def test_profile():
                assert settings.default.max_examples == {examples}
                assert settings.default.derandomize is {examples == 60}
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**_env(), "HYPOTHESIS_PROFILE": value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}


def _get_reply(exchange: Exchange) -> bool:
    """What ``get KEY`` must answer, from the store the model's session filled."""
    key = exchange.frame.split()[1]
    found = exchange.protocol.factory.store.get(key)
    if found is None:
        return exchange.reply == b"END\r\n"
    flags, value = found
    return exchange.reply == b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


REPLIES = {Commands.block: b"STORED\r\n", Commands.get: _get_reply}


def test_replies_are_checked_and_values_come_back() -> None:
    found: list[bytes] = []

    def get_reply(exchange: Exchange) -> bool:
        if exchange.reply.startswith(b"VALUE"):
            found.append(exchange.reply)
        return _get_reply(exchange)

    keys = st.sampled_from([b"a", b"key"])
    frames = {
        Commands.set: st.tuples(keys, st.integers(0, 9), st.integers(0, 64)).map(
            lambda t: b"set %s %d 0 %d" % t
        ),
        Commands.get: keys.map(lambda k: b"get " + k),
    }
    check_protocol(
        Memcache,
        factory=Store,
        settings=STRICT,
        frames=frames,
        replies={**REPLIES, Commands.get: get_reply},
        require_coverage=True,
    )
    assert found, "no get ever found a stored value"


def test_a_wrong_reply_is_caught() -> None:
    class Amnesia(dict[bytes, tuple[int, bytes]]):
        def __setitem__(self, key: bytes, value: tuple[int, bytes]) -> None:
            pass  # says STORED, keeps nothing

    class Forgetful(Store):
        def __init__(self) -> None:
            self.store = Amnesia()

    frames = {Commands.get: st.just(b"get a"), Commands.set: st.just(b"set a 1 0 3")}

    # the test's own model, kept on each connection's factory: was "a" stored there?
    def on_block(exchange: Exchange) -> bool:
        exchange.protocol.factory.expected = True
        return exchange.reply == b"STORED\r\n"

    def on_get(exchange: Exchange) -> bool:
        if getattr(exchange.protocol.factory, "expected", False):
            return exchange.reply.startswith(b"VALUE a 1 3\r\n")
        return exchange.reply == b"END\r\n"

    replies = {Commands.block: on_block, Commands.get: on_get}
    check_protocol(Memcache, factory=Store, settings=STRICT, frames=frames, replies=replies)
    with pytest.raises(AssertionError, match=r"reply to get b'get a' in 'command'"):
        check_protocol(
            Memcache, factory=Forgetful, settings=STRICT, frames=frames, replies=replies
        )
    with pytest.raises(AssertionError, match=r"b'STORED\\r\\n', expected b'OK\\r\\n'"):
        check_protocol(
            Memcache,
            factory=Store,
            settings=STRICT,
            frames=frames,
            replies={Commands.block: b"OK\r\n"},
        )
    import re

    check_protocol(
        Memcache,
        factory=Store,
        settings=STRICT,
        frames=frames,
        replies={Commands.block: re.compile(rb"STORED\r\n")},
    )


def test_a_block_framed_by_an_expression_of_the_state_data_is_generated_to_fit() -> None:
    """``fixed(this.size + 2)`` takes its size from the state's data: the model generates
    blocks of exactly that many bytes, so every edge is walked and values are stored."""
    from construct import this

    class Expressed(Memcache):
        framings = {command: line(max_length=2048), receiving: fixed(this.size + 2)}

    check_protocol(Expressed, factory=Store, settings=STRICT, require_coverage=True)
