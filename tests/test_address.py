"""The quick address makers are the address classes' own objects."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from statewire.address import IPv4Address, IPv6Address, from_sockaddr, tcp4, tcp6

HOSTS = st.sampled_from(["127.0.0.1", "::1", "10.0.0.255", "fe80::1%eth0", ""])
PORTS = st.integers(0, 65535)


@given(HOSTS, PORTS)
def test_the_quick_makers_make_what_the_classes_make(host: str, port: int) -> None:
    for quick, kind in ((tcp4, IPv4Address), (tcp6, IPv6Address)):
        made, expected = quick(host, port), kind("TCP", host, port)
        assert type(made) is kind
        assert made == expected and hash(made) == hash(expected)
        assert repr(made) == repr(expected)
        assert pickle.loads(pickle.dumps(made)) == expected
        assert (made.type, made.host, made.port) == ("TCP", host, port)


def test_quick_addresses_stay_frozen() -> None:
    address = tcp4("127.0.0.1", 1)
    try:
        address.port = 2  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a quick address could be changed")
    assert address.port == 1


def test_from_sockaddr_tells_the_families_apart() -> None:
    assert from_sockaddr(False, ("127.0.0.1", 80)) == IPv4Address("TCP", "127.0.0.1", 80)
    assert from_sockaddr(False, ("::1", 80, 0, 0)) == IPv6Address("TCP", "::1", 80)
    assert from_sockaddr(False, ("::1", 80, 0, 0)) != IPv4Address("TCP", "::1", 80)
