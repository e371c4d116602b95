"""Three edges of the memcached server, each replayed byte for byte against the real
memcached (1.6, one thread, its default 1 MiB item size, as statewire's ``MAX_ITEM``) and
then held to the bytes memcached gives:

- an item over the size limit is refused ``SERVER_ERROR object too large for cache``, an
  ``ms`` with ``q`` too (q hides success, never an error); a classic ``noreply`` hides it;
  the limit is memcached's to the byte (its 59 bytes of header, 4 more with flags);
- an append (``append``, ``prepend``, ``ms`` ``MA``/``MP``) that would grow its item over
  the limit is ``NOT_STORED`` / ``NS``, the item left as it was, no CAS taken, nothing
  counted (the CAS an ``ms`` append checks is not counted either);
- ``flush_all N`` takes effect a second before N (memcached's ``oldest_live`` is the time
  given less 1): ``flush_all 1`` at once, ``flush_all 2`` a second later; ``me``, ``mg``
  and ``get`` see the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from memcached_helpers import serve_example, session, start_memcached
from test_memcache_server import Client, same_replies
from test_memcache_stats import counted_alike

from statewire.protocols.memcache import MAX_ITEM

TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
#: memcached's item header, the key's NUL, the block's CRLF, the CAS (4 more with flags)
HEADER = 59


def largest(key: bytes, flags: int = 0) -> int:
    """The largest value memcached stores under ``key`` with client ``flags``."""
    return MAX_ITEM - HEADER - len(key) - (4 if flags else 0)


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    yield from serve_example()


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached("-t", "1")


# -- 1. too large: refused, whatever q says; noreply hides it --------------------------------


def test_an_ms_too_large_is_refused_even_with_q(served: int, memcached: int) -> None:
    big = largest(b"k") + 1
    block = b"x" * big + b"\r\n"
    data = (
        b"set k 0 0 1\r\nv\r\n"
        + b"ms k %d q\r\n" % big
        + block
        + b"mg k v\r\n"  # as memcached: the old item is gone
        + b"ms k %d q O1 k MA\r\n" % big
        + block
        + b"ms k %d\r\n" % big
        + block
        + b"mn\r\n"
    )
    replies = same_replies(served, memcached, data)
    assert replies == b"OK\r\nSTORED\r\n" + TOO_LARGE + b"EN\r\n" + TOO_LARGE * 2 + b"MN\r\n"


def test_an_ms_too_large_by_a_base64_key_drops_the_item_of_the_decoded_key(
    served: int, memcached: int
) -> None:
    big = largest(b"key") + 1
    data = (
        b"set key 0 0 1\r\nx\r\nset a2V5 0 0 1\r\ny\r\n"
        + b"ms a2V5 %d b\r\n" % big
        + b"z" * big
        + b"\r\nget key a2V5\r\n"
    )
    replies = same_replies(served, memcached, data)
    assert replies == (
        b"OK\r\nSTORED\r\nSTORED\r\n" + TOO_LARGE + b"VALUE a2V5 0 1\r\ny\r\nEND\r\n"
    )


def test_a_classic_store_too_large_with_noreply_is_silent(served: int, memcached: int) -> None:
    big = largest(b"k") + 1
    block = b"x" * big + b"\r\n"
    data = (
        b"set k 0 0 1\r\nv\r\nset j 0 0 1\r\nv\r\n"
        + b"set k 0 0 %d noreply\r\n" % big
        + block
        + b"append j 0 0 %d noreply\r\n" % big
        + block
        + b"mg k v\r\nmg j v\r\nmn\r\n"  # set removes the old item; append leaves it
    )
    replies = same_replies(served, memcached, data)
    assert replies == b"OK\r\nSTORED\r\nSTORED\r\nEN\r\nVA 1\r\nv\r\nMN\r\n"


@pytest.mark.parametrize("flags", [0, 7])
def test_the_size_limit_is_memcacheds_to_the_byte(served: int, memcached: int, flags: int) -> None:
    fits, over = largest(b"key", flags), largest(b"key", flags) + 1
    data = b"".join(
        b"%s key %d 0 %d\r\n" % (verb, flags, size) + b"z" * size + b"\r\n"
        for verb, size in [(b"set", fits), (b"set", over), (b"add", over), (b"set", fits)]
    )
    data += b"ms key %d F%d\r\n" % (fits, flags) + b"z" * fits + b"\r\n"
    data += b"ms key %d F%d\r\n" % (over, flags) + b"z" * over + b"\r\n"
    data += b"ms a2V5 %d F%d b\r\n" % (fits, flags) + b"z" * fits + b"\r\n"  # key, decoded
    replies = same_replies(served, memcached, data)
    assert (
        replies
        == b"OK\r\nSTORED\r\n" + TOO_LARGE * 2 + b"STORED\r\nHD\r\n" + TOO_LARGE + b"HD\r\n"
    )


def test_the_size_limit_in_memory() -> None:
    client = Client()
    fits = largest(b"k")
    assert client(b"set k 0 0 %d\r\n" % fits + b"z" * fits + b"\r\n") == b"STORED\r\n"
    assert client(b"set k 1 0 %d\r\n" % fits + b"z" * fits + b"\r\n") == TOO_LARGE
    assert client(b"ms k %d q\r\n" % (fits + 1) + b"z" * (fits + 1) + b"\r\n") == TOO_LARGE
    assert client(b"set k 0 0 %d noreply\r\n" % (fits + 1) + b"z" * (fits + 1) + b"\r\n") == b""


# -- 2. an append over the limit: not stored ----------------------------------------------


@pytest.mark.parametrize("flags", [0, 7])
def test_an_append_over_the_limit_is_not_stored(served: int, memcached: int, flags: int) -> None:
    room = largest(b"k", flags) - 1000  # what the item of 1000 bytes can still take
    grow = b"append k 0 0 %d\r\n" % room + b"a" * room + b"\r\n"
    data = (
        b"set k %d 0 1000\r\n" % flags
        + b"o" * 1000
        + b"\r\n"
        + grow  # to the limit exactly: stored
        + b"mg k c\r\n"
        + b"append k 0 0 1\r\nx\r\n"
        + b"prepend k 0 0 1\r\nx\r\n"
        + b"append k 0 0 1 noreply\r\nx\r\n"
        + b"ms k 1 MA O1 k c\r\nx\r\n"
        + b"ms k 1 MP q k\r\nx\r\n"
        + b"ms k 1 MA q\r\nx\r\n"
        + b"mg k c f\r\n"  # as it was: the same CAS, the same flags
        + b"set other 0 0 1\r\nv\r\nmg other c\r\n"  # no CAS was taken by the refusals
    )
    replies = same_replies(served, memcached, data)
    lines = replies.split(b"\r\n")
    assert lines[:3] == [b"OK", b"STORED", b"STORED"]
    cas = int(lines[3].removeprefix(b"HD c"))
    assert lines[4:] == [
        b"NOT_STORED",
        b"NOT_STORED",
        b"NS O1 kk c0",
        b"NS kk",
        b"NS",
        b"HD c%d f%d" % (cas, flags),
        b"STORED",
        b"HD c%d" % (cas + 1),
        b"",
    ]


def test_an_append_over_the_limit_counts_nothing(served: int, memcached: int) -> None:
    room = largest(b"k") - 1
    data = (
        b"set k 0 0 1\r\no\r\n"
        + b"append k 0 0 %d\r\n" % room
        + b"a" * room
        + b"\r\nappend k 0 0 1\r\nx\r\nms k 1 MP\r\nx\r\n"
    )
    moved = counted_alike(served, memcached, data)  # every counter moved alike
    assert moved[b"store_no_memory"] == 0 and moved[b"total_items"] == 3  # (with the probe)


def test_an_ms_append_s_cas_is_checked_but_not_counted(served: int, memcached: int) -> None:
    data = (
        b"set k 0 0 1\r\no\r\nmg k c\r\n"
        b"ms k 1 MA C1\r\nx\r\n"  # a CAS that differs (the servers' counters are past 1)
        b"ms k 1 MR C1\r\nx\r\n"  # a replace's is counted
    )
    moved = counted_alike(served, memcached, data)
    assert moved[b"cas_badval"] == 1 and moved[b"cas_hits"] == 0


def test_an_append_over_the_limit_in_memory() -> None:
    client = Client()
    room = largest(b"k") - 1
    client(b"set k 0 0 1\r\no\r\nappend k 0 0 %d\r\n" % room + b"a" * room + b"\r\n")
    before = client.factory.cas
    assert client(b"append k 0 0 1\r\nx\r\nms k 1 MP k\r\nx\r\n") == b"NOT_STORED\r\nNS kk\r\n"
    assert client.factory.cas == before and client.factory.stats[b"store_no_memory"] == 0
    assert client(b"mg k s\r\n") == b"HD s%d\r\n" % (room + 1)


# -- 3. flush_all N: a second before N ----------------------------------------------------


@pytest.fixture
def flushed_after(served: int, memcached: int) -> Iterator[None]:
    """A plain ``flush_all`` to both servers after the test: memcached drops what is
    stored up to the end of the second a delayed flush names (``flush_all 1``: the rest of
    this second), which a plain flush ends; the next test's sets are then kept."""
    yield
    for port in (served, memcached):
        assert session(port, b"flush_all\r\n") == b"OK\r\n"


@pytest.mark.usefixtures("flushed_after")
def test_me_after_flush_all_is_a_miss_as_in_memcached(served: int, memcached: int) -> None:
    for flush in (b"flush_all", b"flush_all 0", b"flush_all noreply", b"flush_all 1"):
        data = b"set a 0 0 1\r\nv\r\n" + flush + b"\r\nme a\r\nmg a v\r\nget a\r\n"
        replies = same_replies(served, memcached, data)
        assert replies.endswith(b"EN\r\nEN\r\nEND\r\n")


@pytest.mark.usefixtures("flushed_after")
def test_a_delayed_flush_all_leaves_items_until_its_time(served: int, memcached: int) -> None:
    data = b"set a 0 0 1\r\nv\r\nflush_all 100\r\nme a\r\nmg a v\r\n"
    replies = same_replies(served, memcached, data)
    assert replies.startswith(b"OK\r\nSTORED\r\nOK\r\nME a exp=-1 la=0 cas=")
    assert replies.endswith(b" fetch=no cls=1 size=61\r\nVA 1\r\nv\r\n")


@pytest.mark.usefixtures("flushed_after")
def test_flush_all_2_takes_effect_a_second_later(served: int, memcached: int) -> None:
    same_replies(served, memcached, b"set a 0 0 1\r\nv\r\nflush_all 2\r\n")
    time.sleep(1.3)  # memcached's clock has ticked once at least: its flush is due
    after = b"me a\r\nmg a v\r\nget a\r\n"
    assert session(served, after) == session(memcached, after) == b"EN\r\nEN\r\nEND\r\n"


def test_flush_all_with_a_delay_in_memory() -> None:
    client = Client()
    client(b"set a 0 0 1\r\na\r\n")
    assert client(b"flush_all 1\r\nget a\r\n") == b"OK\r\nEND\r\n"
    client(b"set a 0 0 1\r\na\r\n")
    assert client(b"flush_all 3\r\nme a\r\n").startswith(b"OK\r\nME a ")
    client.clock.advance(1.5)
    assert client(b"get a\r\n").startswith(b"VALUE a")
    client.clock.advance(0.6)  # two seconds on: due
    assert client(b"me a\r\nget a\r\n") == b"EN\r\nEND\r\n"
