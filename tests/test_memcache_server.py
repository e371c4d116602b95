"""The memcached server and examples/memcached.py: the connection's machine in memory on a
test clock (any chunking, the LRU limit, expiry); then over real loopback sockets, judged
by pymemcache (``Client`` and ``HashClient``) and by the real memcached: Hypothesis
generates sessions and each is replayed, raw, against both; replies must be equal byte for
byte. Hostile input (an item of 2 GiB announced, a block without CRLF, a line too long)
is answered as memcached answers it, without holding the bytes."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memcached_helpers import HOST, SENTINEL, serve_example, session, start_memcached
from process_helpers import EXAMPLES, running

from statewire.diagram import to_mermaid
from statewire.protocols.memcache import MemcacheServer
from statewire.testing import differential
from statewire.testing.memory import Conversation
from statewire.testing.strategies import chunkings


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memcached_example", EXAMPLES / "memcached.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


# -- in memory: the machine ------------------------------------------------------------------


class Client(Conversation):
    """A connection to the example's server in memory, on a test clock."""

    def __init__(self, limit: int = 64 << 20) -> None:
        super().__init__(example.MemcacheFactory(example.LRUStore(limit)))
        self.clock.advance(1_000_000)


def test_the_diagram_reads_as_the_connection_states() -> None:
    text = to_mermaid(MemcacheServer)
    for edge in (
        "s_commands --> s_commands : store / store_block",
        "s_commands --> s_storing : block_follows",
        "s_commands --> s_swallowing : oversize / refuse_item",
        "s_storing --> s_commands : block / stored",
        "s_swallowing --> s_commands : last piece (swallowed) / dropped",
        "s_commands --> s_closed : quit / hang_up",
    ):
        assert edge in text, edge
    assert "fixed(size + 2)" in text and "streamed(size + 2)" in text


def test_a_storage_command_reads_its_block_then_commands_again() -> None:
    client = Client()
    assert client(b"set k 3 0 5\r\n") == b""
    assert client.state == "storing"
    assert client(b"hel") == b""
    assert client(b"lo\r\nget k\r\n") == b"STORED\r\nVALUE k 3 5\r\nhello\r\nEND\r\n"
    assert client.state == "commands"


def test_a_block_come_with_its_line_is_stored_with_no_state_change() -> None:
    """A storage command whose block came in the read of its line is stored there (the
    block read with the line: ``take_ahead``), a bad one refused so too; the same bytes
    cut between line and block go through ``storing``, with the same replies."""
    wire = b"set k 3 0 5\r\nhello\r\nset j 0 0 2\r\nxyz\r\nget k j\r\n"
    whole = Client()
    replies = whole(wire)
    assert replies == (
        b"STORED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE k 3 5\r\nhello\r\nEND\r\n"
    )
    assert whole.state == "commands"
    for cut in range(1, len(wire)):
        client = Client()
        assert client(wire[:cut]) + client(wire[cut:]) == replies, cut


def test_bare_lf_ends_a_command_as_in_memcached() -> None:
    client = Client()
    assert client(b"set k 0 0 1\nx\r\nget k\n") == b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"


def test_an_oversize_item_is_refused_at_once_and_its_bytes_dropped_as_they_come() -> None:
    client = Client()
    size = 2_000_000_000  # announced, never sent whole: nothing of it is held
    assert client(b"set big 0 0 %d\r\n" % size) == b"SERVER_ERROR object too large for cache\r\n"
    assert client.state == "swallowing"
    chunk = b"get big\r\n" * 1000  # commands inside the block are data, dropped
    for _ in range(20):
        assert client(chunk) == b""
        assert client.protocol.discard_input() == b""  # each piece went as it came
    assert client.state == "swallowing"


def test_the_end_of_a_swallowed_block_gives_the_commands_back() -> None:
    client = Client()
    client(b"set big 0 0 1\r\nx\r\n")
    size = 1 << 21
    replies = client(b"set big 0 0 %d noreply\r\n" % size + b"z" * (size + 2) + b"get big\r\n")
    assert replies == b"END\r\n"  # noreply hides the refusal; the old value is gone


def test_a_block_without_its_crlf_is_a_bad_data_chunk() -> None:
    client = Client()
    assert client(b"set k 0 0 3\r\nabcde\r\n") == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"


def test_a_line_too_long_is_answered_and_the_connection_closed() -> None:
    client = Client()
    assert client(b"g" * 70000) == b"CLIENT_ERROR line too long\r\n"
    assert client.transport.disconnecting


def test_refusals_are_memcacheds_and_the_connection_goes_on() -> None:
    client = Client()
    assert client(b"bogus\r\n") == b"ERROR\r\n"
    assert client(b"set k x 0 1\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    assert client(b"incr k abc\r\n") == b"CLIENT_ERROR invalid numeric delta argument\r\n"
    assert client(b"get " + b"k" * 251 + b"\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    assert client(b"mg k zz\r\n") == b"CLIENT_ERROR invalid flag\r\n"
    assert client(b"version\r\n") == b"VERSION 1.6.18-statewire\r\n"


def test_expiry_relative_absolute_and_negative_on_the_connection_clock() -> None:
    client = Client()
    client.factory.wall_clock = lambda: 1_700_000_000.0
    client(b"set rel 0 10 1\r\na\r\nset abs 0 1700000020 1\r\nb\r\nset neg 0 -1 1\r\nc\r\n")
    assert client(b"get rel abs neg\r\n").count(b"VALUE") == 2
    client.clock.advance(11)
    assert client(b"get rel abs\r\n") == b"VALUE abs 0 1\r\nb\r\nEND\r\n"
    client.clock.advance(10)
    assert client(b"get abs\r\n") == b"END\r\n"


def test_flush_all_with_a_delay_drops_what_was_stored_before_it() -> None:
    client = Client()
    client(b"set a 0 0 1\r\na\r\n")
    assert client(b"flush_all 5\r\n") == b"OK\r\n"
    assert client(b"get a\r\n").startswith(b"VALUE")
    client.clock.advance(6)
    client(b"set b 0 0 1\r\nb\r\n")
    assert client(b"get a b\r\n") == b"VALUE b 0 1\r\nb\r\nEND\r\n"


def test_the_lru_limit_evicts_the_least_recently_used() -> None:
    client = Client(limit=3000)
    for key in (b"a", b"b", b"c"):
        client(b"set %s 0 0 900\r\n%s\r\n" % (key, b"v" * 900))
    client(b"get a\r\n")  # a is now the most recent
    client(b"set d 0 0 900\r\n%s\r\n" % (b"v" * 900))
    got = client(b"get a b c d\r\n")
    assert [line.split()[1] for line in got.split(b"\r\n") if line.startswith(b"VALUE")] == [
        b"a",
        b"c",
        b"d",
    ]
    assert client.factory.storage.evictions == 1


SESSION = (
    b"set a 1 0 3\r\nabc\r\nadd a 0 0 1\r\nx\r\nappend a 0 0 2\r\nde\r\nprepend a 0 0 1\r\nz\r\n"
    b"gets a\r\nincr n 1\r\nset n 0 0 2\r\n10\r\ndecr n 3\r\nincr n 18446744073709551615\r\n"
    b"touch a 100\r\ndelete a\r\ndelete a\r\nms m 2 T0 F7\r\nhi\r\nmg m v f k s\r\n"
    b"ma c N0 J5 v\r\nma c D2 MD v\r\nmd m q\r\nmg m\r\nmn\r\nset big 0 0 2000000\r\n"
    + b"b" * 2_000_002
    + b"verbosity 1\r\nquit\r\n"
)


@given(st.data())
def test_any_chunking_of_a_session_gives_the_same_replies(data: st.DataObject) -> None:
    whole = Client()
    expected = whole(SESSION)
    assert whole.state == "closed"
    client = Client()
    got = b"".join(client(chunk) for chunk in data.draw(chunkings(SESSION, max_chunks=40)))
    assert got == expected


# -- over sockets: pymemcache, and the real memcached ---------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    """examples/memcached.py served by ``statewire serve`` in its own process."""
    yield from serve_example()


@pytest.fixture(scope="module")
def second() -> Iterator[int]:
    with running("examples/memcached.py", "--port", "0") as server:
        yield server.port
        server.stop()


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached()


def test_pymemcache_client(served: int) -> None:
    from pymemcache.client.base import Client as PyClient
    from pymemcache.exceptions import MemcacheServerError

    client = PyClient((HOST, served), connect_timeout=5, timeout=5)
    try:
        client.flush_all(noreply=False)
        assert client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
        assert client.add("k", b"w", noreply=False) is False
        assert client.replace("k", b"w", noreply=False)
        assert client.append("k", b"x", noreply=False) and client.prepend("k", b"<", noreply=False)
        value, cas = client.gets("k")
        assert value == b"<wx"
        assert client.cas("k", b"new", cas, noreply=False)
        assert client.cas("k", b"newer", cas, noreply=False) is False
        assert client.set("n", b"41", noreply=False)
        assert client.incr("n", 1) == 42 and client.decr("n", 50) == 0
        assert client.touch("k", 100, noreply=False)
        assert client.set_many({"a": b"1", "b": b"2"}, noreply=False) == []
        assert client.get_many(["a", "b", "missing"]) == {"a": b"1", "b": b"2"}
        assert client.delete("a", noreply=False) and not client.delete("a", noreply=False)
        big = bytes(range(256)) * 2000  # 500 KB
        assert client.set("big", big, noreply=False) and client.get("big") == big
        with pytest.raises(MemcacheServerError, match="too large"):
            client.set("huge", b"h" * (2 << 20), noreply=False)
        assert client.get("k") == b"new"  # the connection went on after the refusal
        assert client.version().startswith(b"1.6")
        assert b"version" in client.stats()
    finally:
        client.close()


def test_pymemcache_hash_client_over_two_servers(served: int, second: int) -> None:
    from pymemcache.client.hash import HashClient

    client = HashClient([(HOST, served), (HOST, second)], connect_timeout=5, timeout=5)
    try:
        values = {f"key{i}": b"%d" % i for i in range(200)}
        assert client.set_many(values, noreply=False) == []
        assert client.get_many(list(values)) == values
    finally:
        client.close()


def _aligned(ours: int, theirs: int) -> None:
    """Bring both servers' CAS counters to the same number, so sessions compare raw."""
    probe = b"set __cas 0 0 1\r\nx\r\nmg __cas c\r\n"
    counters = []
    for port in (ours, theirs):
        reply = session(port, probe)
        counters.append(int(reply.split(b"\r\n")[1].split(b" c")[1]))
    lag = max(counters) - min(counters)
    behind = (ours, theirs)[counters.index(min(counters))]
    if lag:
        session(behind, b"set __pad 0 0 1 noreply\r\nx\r\n" * lag)


_SIZE = re.compile(rb" s\d+(?=[ \r])")
_VALUE = re.compile(rb"(VALUE \S+ \d+ |VA )(\d+)([^\r]*)\r\n")


def unpadded(replies: bytes) -> bytes:
    """Replies with the spaces a shortened counter is padded with taken off its values.
    memcached pads a counter rewritten in place, and rewrites it in place only when no
    reply still being sent holds the item: which depends on how the pipeline was read,
    not on the session. statewire always pads (as memcached does on a quiet connection)."""
    out, pos = [], 0
    for match in _VALUE.finditer(replies):
        if match.start() < pos:
            continue
        size = int(match.group(2))
        data = replies[match.end() : match.end() + size]
        stripped = data.rstrip(b" ")
        out += [replies[pos : match.start()], match.group(1), b"%d" % len(stripped)]
        out += [match.group(3), b"\r\n", stripped]
        pos = match.end() + size
    out.append(replies[pos:])
    # a meta reply's size flag counts the padding too: sizes are compared in memory only
    return _SIZE.sub(b" s#", b"".join(out))


def same_replies(ours: int, theirs: int, data: bytes) -> bytes:
    _aligned(ours, theirs)
    return differential.same_replies(
        ours, theirs, b"flush_all\r\n" + data, sentinel=SENTINEL, normalize=unpadded
    )


KEYS = [b"k1", b"k2", b"n"]
VALUES = [b"1", b"10", b"abc", b"", b"18446744073709551615", b"x y", b"007"]


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(KEYS))
    value = draw(st.sampled_from(VALUES))
    noreply = draw(st.sampled_from([b"", b" noreply"]))
    exptime = draw(st.sampled_from([b"0", b"-1"]))
    flags = draw(st.sampled_from([b"0", b"7", b"4294967295"]))
    number = draw(st.sampled_from([b"1", b"0", b"5", b"18446744073709551615", b"x"]))
    kind = draw(st.integers(0, 12))
    # counters (incr, decr, ma) live at ``n`` only, and are never appended to: a counter
    # shortened in place is padded with spaces, in memcached only when no reply in flight
    # holds it, and appending to the padding would tell the two apart (see ``unpadded``)
    if kind <= 2:
        name = draw(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend"]))
        if name in (b"append", b"prepend"):
            key = draw(st.sampled_from(KEYS[:2]))
        head = b"%s %s %s %s %d%s" % (name, key, flags, exptime, len(value), noreply)
        return head + b"\r\n" + value + b"\r\n"
    if kind == 3:
        keys = b" ".join(draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)))
        return draw(st.sampled_from([b"get ", b"gets ", b"gat 0 ", b"gats -1 "])) + keys + b"\r\n"
    if kind == 4:
        return b"delete %s%s\r\n" % (key, noreply)
    if kind == 5:
        name = draw(st.sampled_from([b"incr", b"decr"]))
        return b"%s n %s%s\r\n" % (name, number, noreply)
    if kind == 6:
        return b"touch %s %s%s\r\n" % (key, exptime, noreply)
    if kind == 7:
        flags_ = draw(
            st.lists(st.sampled_from([b"v", b"f", b"k", b"s", b"q", b"Oab"]), unique=True)
        )
        return b" ".join([b"mg", key, *flags_]) + b"\r\n"
    if kind == 8:
        flags_ = draw(
            st.lists(st.sampled_from([b"q", b"F3", b"MA", b"ME", b"MR", b"k"]), unique=True)
        )
        key = draw(st.sampled_from(KEYS[:2]))
        return b" ".join([b"ms", key, b"%d" % len(value), *flags_]) + b"\r\n" + value + b"\r\n"
    if kind == 9:
        flags_ = draw(st.lists(st.sampled_from([b"q", b"k", b"Oxy"]), unique=True))
        return b" ".join([b"md", key, *flags_]) + b"\r\n"
    if kind == 10:
        flags_ = draw(
            st.lists(st.sampled_from([b"v", b"N0", b"J3", b"D2", b"MD", b"q", b"k"]), unique=True)
        )
        return b" ".join([b"ma", b"n", *flags_]) + b"\r\n"
    if kind == 11:
        return draw(st.sampled_from([b"bogus\r\n", b"\r\n", b"set k 0 0\r\n", b"mn\r\n"]))
    return b"set %s 0 0 3\r\nabcde\r\n" % key  # a block without its CRLF


@given(st.lists(commands(), min_size=1, max_size=12))
def test_generated_sessions_match_memcached(
    served: int, memcached: int, requests: list[bytes]
) -> None:
    same_replies(served, memcached, b"".join(requests))


def test_hostile_input_is_answered_as_memcached_answers_it(served: int, memcached: int) -> None:
    size = 2_000_000
    same_replies(served, memcached, b"set big 0 0 %d\r\n" % size + b"x" * (size + 2))
    same_replies(
        served,
        memcached,
        b"set k 0 0 1\r\nx\r\nset k 0 0 %d\r\n" % size + b"y" * (size + 2) + b"get k\r\n",
    )
    same_replies(served, memcached, b"get a b c d\r\nincr\r\nget\r\nset k 0 0 -1\r\n")


def test_the_simple_commands_word_counts_match_memcached(served: int, memcached: int) -> None:
    same_replies(
        served,
        memcached,
        b"verbosity\r\nverbosity 1\r\nverbosity 1 noreply\r\nverbosity noreply\r\n"
        b"verbosity a b c\r\nstats noreply\r\nflush_all 0 5\r\nflush_all abc\r\n"
        b"flush_all noreply\r\nflush_all 1 2 3\r\nmn\r\n",
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's libmemcached-tools; .ci/run installs it)")
    return path


def test_memccapable_finds_the_text_protocol_complete(served: int) -> None:
    """libmemcached's conformance checker, every ASCII test."""
    done = subprocess.run(
        [_tool("memccapable"), "-a", "-h", HOST, "-p", str(served)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[FAIL]" not in done.stdout and done.stdout.count("[pass]") >= 27, done.stdout


def test_memccp_and_memccat_round_trip_a_file(served: int, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "blob.bin").write_bytes(data)
    servers = f"--servers={HOST}:{served}"
    subprocess.run([_tool("memccp"), servers, "blob.bin"], cwd=tmp_path, check=True, timeout=30)
    got = subprocess.run(
        [_tool("memccat"), servers, "blob.bin"], capture_output=True, check=True, timeout=30
    )
    assert got.stdout == data + b"\n"  # memccat ends what it prints with a newline


def test_a_set_of_2_gib_announced_is_refused_before_its_bytes(served: int) -> None:
    with socket.create_connection((HOST, served), timeout=10) as sock:
        sock.sendall(b"set k 0 0 2147483000\r\n")
        assert sock.recv(100) == b"SERVER_ERROR object too large for cache\r\n"
        sock.sendall(b"z" * (1 << 20))  # dropped as it comes; the server still answers others
    assert session(served, b"version\r\n").startswith(b"VERSION")
