"""The meta protocol's newer flags and the expiry times past 32 bits: ``mg`` that vivifies
on a miss (``N``) and wins or yields recaching (``W``, ``Z``, ``R``), stale items (``md I``,
``ms I``, the ``X`` flag), base64 keys (``b``); in memory on a test clock, then session by
session against the real memcached, byte for byte."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memcached_helpers import start_memcached
from process_helpers import running
from test_memcache_server import Client, same_replies

from statewire.protocols._memcache_ops import _from_base64

# -- expiry times past 32 bits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("exptime", "left"),
    [
        (b"4294967306", b"t10"),  # 2**32 + 10: memcached keeps the low 32 bits
        (b"4294967296", b"t-1"),  # 2**32: 0, never
        (b"-4294967295", b"t1"),  # -(2**32) + 1: 1
        (b"-9223372036854775808", b"t-1"),  # the smallest 64-bit number: 0
    ],
)
def test_a_64_bit_expiry_time_keeps_its_low_32_bits(exptime: bytes, left: bytes) -> None:
    client = Client()
    set_it = b"set k 0 %s 1\r\nx\r\nmg k t\r\n" % exptime
    assert client(set_it) == b"STORED\r\nHD %s\r\n" % left
    for request in (b"touch k %s\r\n", b"gat %s k\r\n", b"mg k T%s\r\n", b"ms k 1 T%s\r\nx\r\n"):
        client(b"set k 0 0 1\r\nx\r\n" + request % exptime)
        assert client(b"mg k t\r\n") == b"HD %s\r\n" % left, request


@pytest.mark.parametrize("exptime", [b"2147483648", b"-1", b"9223372036854775807"])
def test_a_64_bit_expiry_time_negative_in_32_bits_is_already_past(exptime: bytes) -> None:
    client = Client()
    assert client(b"set k 0 %s 1\r\nx\r\nget k\r\n" % exptime) == b"STORED\r\nEND\r\n"
    assert client(b"ma n N%s\r\nmg n\r\n" % exptime) == b"HD\r\nEN\r\n"


def test_past_64_bits_an_expiry_time_is_refused_in_each_commands_words() -> None:
    client = Client()
    too_big = b"9223372036854775808"
    client(b"set k 0 0 1\r\nx\r\n")
    assert client(b"set k 0 %s 1\r\n" % too_big) == b"CLIENT_ERROR bad command line format\r\n"
    assert client(b"touch k %s\r\n" % too_big) == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert client(b"gat %s k\r\n" % too_big) == b"CLIENT_ERROR invalid exptime argument\r\n"
    bad_token = b"CLIENT_ERROR bad token in command line format\r\n"
    assert client(b"mg k T%s\r\n" % too_big) == bad_token
    assert client(b"ma k N%s\r\n" % too_big) == b"CLIENT_ERROR invalid or duplicate flag\r\n"


# -- mg N, R and the W, Z, X flags ----------------------------------------------------------


def test_mg_n_vivifies_a_miss_and_one_client_wins_it() -> None:
    client = Client()
    assert client(b"mg k v N30 t s f k\r\n") == b"VA 0 t30 s0 f0 kk W\r\n\r\n"
    assert client(b"mg k v N30 t\r\n") == b"VA 0 t30 Z\r\n\r\n"  # the next one is told
    assert client(b"get k\r\n") == b"VALUE k 0 0\r\n\r\nEND\r\n"  # an empty item
    assert client(b"ms k 3\r\nabc\r\nmg k v N30\r\n") == b"HD\r\nVA 3\r\nabc\r\n"
    # flags act in the order given: a t before N says the TTL before N set it
    assert client(b"mg a t N30\r\nmg b T60 N30 t\r\nmg c N30 T60 t\r\n") == (
        b"HD t-1 W\r\nHD t30 W\r\nHD t60 W\r\n"
    )
    assert client(b"mg d q k N0\r\n") == b"HD kd W\r\n"  # q hides a miss, not this


def test_mg_r_wins_an_item_whose_ttl_is_shorter_than_asked() -> None:
    client = Client()
    client(b"set r 0 20 1\r\nx\r\nset forever 0 0 1\r\nx\r\n")
    assert client(b"mg r R10\r\nmg forever R30\r\n") == b"HD\r\nHD\r\n"
    assert client(b"mg r R30\r\nmg r R30\r\n") == b"HD W\r\nHD Z\r\n"


def test_md_i_makes_an_item_stale_and_the_first_to_see_it_recaches() -> None:
    client = Client()
    client(b"set s 0 0 2\r\nhi\r\n")
    cas = int(client(b"mg s c\r\n").split(b"c")[1])
    assert client(b"md s I\r\n") == b"HD\r\n"
    assert client(b"mg s v c\r\n") == b"VA 2 c%d X W\r\nhi\r\n" % (cas + 1)  # a new CAS
    assert client(b"mg s v\r\n") == b"VA 2 Z X\r\nhi\r\n"
    assert client(b"get s\r\n") == b"VALUE s 0 2\r\nhi\r\nEND\r\n"  # text: the value
    assert client(b"md s I T30 q\r\nmg s t\r\n") == b"HD t30 X W\r\n"  # won anew
    assert client(b"ms s 2\r\nho\r\nmg s v\r\n") == b"HD\r\nVA 2\r\nho\r\n"  # fresh again
    assert client(b"md s T5\r\nmg s\r\n") == b"HD\r\nEN\r\n"  # T without I: a deletion


def test_ms_i_stores_an_older_cas_as_stale() -> None:
    client = Client()
    client(b"set i 0 0 1\r\nx\r\n" * 2)  # CAS 2: C1 is older
    assert client(b"ms i 1 C1 I\r\ny\r\nmg i v\r\n") == b"HD\r\nVA 1 X W\r\ny\r\n"
    assert client(b"ms i 1 C999999 I\r\nz\r\n") == b"EX\r\n"  # a newer CAS is no match
    assert client(b"ms i 1 C1 I\r\nq\r\nmg i v\r\n") == b"HD\r\nVA 1 Z X\r\nq\r\n"


# -- base64 keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        (b"Zm9v", b"foo"),
        (b"Zg==", b"f"),
        (b"Zm9=", b"fo"),  # bits past the last byte are dropped
        (b"Zm=v", b"f`"),  # = counts as zero, and as padding
        (b"Zm9vZg==Zm9v", b"foof"),  # the first padded group ends it
        (b"Zm9vZg==!", b"foof"),  # bytes outside the alphabet are skipped
        (b"Zm+/", b"fo\xbf"),
        (b"Zg=", None),
        (b"Z===", None),
        (b"====", None),
        (b"Zm9v====", None),
        (b"Zm-v", None),
        (b"!!!!", None),
    ],
)
def test_base64_keys_decode_as_memcached_decodes_them(text: bytes, decoded: bytes | None) -> None:
    assert _from_base64(text) == decoded


@given(st.binary(min_size=1, max_size=100))
def test_base64_of_any_key_decodes_back(key: bytes) -> None:
    assert _from_base64(base64.b64encode(key)) == key


def test_a_base64_key_is_the_same_item_and_comes_back_in_base64() -> None:
    client = Client()
    assert client(b"ms Zm9v 3 b\r\nabc\r\nget foo\r\n") == b"HD\r\nVALUE foo 0 3\r\nabc\r\nEND\r\n"
    assert client(b"mg Zm9v b k v\r\n") == b"VA 3 kZm9v b\r\nabc\r\n"
    assert client(b"mg foo k\r\n") == b"HD kZm9v b\r\n"  # mg names it as it was stored
    assert client(b"mg Zm9= b k\r\n") == b"EN kZm8= b\r\n"  # a miss: the key re-encoded
    client(b"set bar 0 0 1\r\nx\r\nset n 0 0 1\r\n1\r\n")
    assert client(b"mg YmFy b k\r\n") == b"HD kbar\r\n"  # stored by its plain name
    assert client(b"ma bg== b k\r\n") == b"HD kbg== b\r\n"  # ma names it as asked
    refusals = client(b"mg ! b\r\nms ! 1 b\r\nx\r\nmd ! b\r\nma ! b\r\nme ! b\r\n")
    assert refusals == (
        b"CLIENT_ERROR error decoding key\r\nCLIENT_ERROR error decoding key\r\n"
        b"CLIENT_ERROR invalid or duplicate flag\r\nCLIENT_ERROR invalid or duplicate flag\r\n"
        b"CLIENT_ERROR bad command line format\r\n"
    )


# -- against the real memcached ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    target = "examples/memcached.py:factory"
    with running("-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1") as s:
        yield s.port
        s.stop()


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    yield from start_memcached()


@pytest.mark.parametrize(
    "session",
    [
        # expiry times past 32 bits
        b"set a 0 4294967296 1\r\nx\r\nmg a t v\r\nset b 0 2147483648 1\r\nx\r\nmg b\r\n"
        b"set c 0 4294967396 1\r\nx\r\nmg c\r\nset d 0 -4294967196 1\r\nx\r\nmg d\r\n"
        b"set e 0 9223372036854775807 1\r\nx\r\nmg e\r\nset f 0 9223372036854775808 1\r\nx\r\n"
        b"set g 0 -9223372036854775809 1\r\nx\r\n",
        b"set k 0 0 1\r\nx\r\ntouch k 4294967296\r\nmg k t\r\ngat 2147483648 k\r\nmg k\r\n"
        b"set k 0 0 1\r\nx\r\nmg k T4294967296 t\r\nmg k t\r\nmg k T-4294967296 t\r\n"
        b"ms k 1 T4294967296\r\nx\r\nmg k t\r\nms k 1 T2147483648\r\nx\r\nmg k\r\n"
        b"md n q\r\nma n N4294967296 t\r\nma n T2147483648\r\nmg n\r\n"
        b"touch k 9223372036854775808\r\ngat -9223372036854775809 k\r\n"
        b"mg k T9223372036854775808\r\nma k N9223372036854775808\r\n",
        # mg N: vivify, W then Z
        b"mg v v N0 t c s f k\r\nmg v v N0 t\r\nmg v k\r\nget v\r\nmg v q N0 v\r\n"
        b"mg w q k N0 t\r\nmg w t N0\r\nmg x t N0\r\nmg y T0 N0 t\r\nms v 3\r\nabc\r\n"
        b"mg v v N0\r\nmg z Nx v\r\nmg z N\r\nmg z O1 N0 v\r\nmd z\r\nmg z O1 k N0 v q\r\n",
        # R: win when the TTL left is shorter than asked
        b"set r 0 100 1\r\nx\r\nmg r R30\r\nmg r R1000\r\nmg r R1000\r\n"
        b"set r 0 0 1\r\nx\r\nmg r R1000\r\nmg nope R1000\r\nmg nope2 R1000 N0\r\n"
        b"mg nope2 R1000\r\n",
        # md I, stale items, X W then Z X
        b"set s 0 0 2\r\nhi\r\nmd s I\r\nmg s v\r\nmg s v\r\nmg s k\r\nget s\r\n"
        b"md s I T0\r\nmg s t\r\nmd s\r\nmg s\r\nset s 0 0 2\r\nhi\r\nmd s I q\r\n"
        b"mg s t v\r\nms s 2 T0\r\nho\r\nmg s v t\r\nmd nope I\r\nmd s T0\r\nmg s\r\n"
        b"md s I C1\r\nmd s q I\r\n",
        # ms I with an older CAS
        b"set i 0 0 1\r\nx\r\nms i 1 C1 I\r\ny\r\nmg i v\r\nms i 1 C999999999 I\r\nz\r\n"
        b"mg i v\r\nms i 1 I\r\nw\r\nmg i v\r\nmd i I\r\nms i 1 C1 I\r\nq\r\nmg i v\r\n"
        b"ms i 1 C1 I q\r\nz\r\nmg i v\r\n",
        # base64 keys
        b"ms Zm9v 3 b\r\nabc\r\nget foo\r\nmg Zm9v b k v\r\nmg foo k v\r\nmg Zm9v k v\r\n"
        b"mg Zm9v b k O9 q\r\nmg Zm9 b v\r\nmg Zm9v= b v\r\nmg !!!! b v\r\n"
        b"mg Zm9vAA== b k v\r\nmg YmFy b k\r\nmg YmFy b k q\r\nmd Zm9v b k\r\nget foo\r\n"
        b"mg Zm9= b k\r\nmg Zm=v b k\r\nmg Zm9vZg==Zm9v b k\r\nmg Zm9vZg==! b k\r\n"
        b"mg Zg= b k\r\nmg Z=== b k\r\nmg Zm9v==== b k\r\nmg Zm+/ b k\r\n",
        b"ms !!!! 3 b\r\nabc\r\nma !!!! b\r\nmd !!!! b\r\nme !!!! b\r\nms Zm9v 2 b I\r\nab\r\n"
        b"ms bWE= 1 b\r\n1\r\nma bWE= b N0 v k\r\nma ma b v k\r\nma bWE= v k\r\nma ma v k\r\n"
        b"mg ma k\r\nset ma 0 0 1\r\n1\r\nma bWE= b v k\r\nset bar 0 0 1\r\nx\r\n"
        b"mg YmFy b k v\r\nmg bar k\r\nmd YmFy b k q\r\nmg bar\r\nmg bmV3 b N0 k\r\nmg new k\r\n",
    ],
)
def test_meta_sessions_answer_as_memcached(served: int, memcached: int, session: bytes) -> None:
    same_replies(served, memcached, session)


KEYS = [b"k1", b"k2"]
#: how each key is named: as it is, or in base64 with the ``b`` flag
NAMES = [(key, b"") for key in KEYS] + [(base64.b64encode(key), b" b") for key in KEYS]


@st.composite
def meta_commands(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(KEYS))
    name, b = draw(st.sampled_from([*NAMES, (b"!!", b" b")]))
    kind = draw(st.integers(0, 6))
    if kind == 0:
        flags = draw(
            st.lists(
                st.sampled_from(
                    [b"v", b"k", b"c", b"f", b"s", b"q", b"O1", b"N0", b"R1000", b"T0", b"T1000"]
                ),
                unique_by=lambda flag: flag[:1],
                max_size=5,
            )
        )
        return b" ".join([b"mg", name, *flags]) + b + b"\r\n"
    if kind == 1:
        flags = draw(
            st.lists(
                st.sampled_from([b"I", b"q", b"k", b"T0", b"C1", b"O2"]),
                unique_by=lambda flag: flag[:1],
                max_size=3,
            )
        )
        return b" ".join([b"md", name, *flags]) + b + b"\r\n"
    if kind == 2:
        flags = draw(
            st.lists(
                st.sampled_from([b"I", b"q", b"k", b"T1000", b"C1", b"C999999999", b"ME"]),
                unique_by=lambda flag: flag[:1],
                max_size=3,
            )
        )
        return b" ".join([b"ms", name, b"2", *flags]) + b + b"\r\nhi\r\n"
    if kind == 3:
        exptime = draw(st.sampled_from([b"0", b"1000", b"4294967296", b"2147483648"]))
        return b"set %s 0 %s 1\r\nx\r\n" % (key, exptime)
    if kind == 4:
        return draw(st.sampled_from([b"get ", b"gets "])) + key + b"\r\n"
    if kind == 5:
        exptime = draw(st.sampled_from([b"0", b"4294967296", b"-1", b"9223372036854775808"]))
        return b"touch %s %s\r\n" % (key, exptime)
    return b"delete %s\r\n" % key


@given(st.lists(meta_commands(), min_size=1, max_size=10))
def test_generated_meta_sessions_match_memcached(
    served: int, memcached: int, requests: list[bytes]
) -> None:
    same_replies(served, memcached, b"".join(requests))
