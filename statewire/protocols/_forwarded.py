"""``X-Forwarded-Proto`` and ``X-Forwarded-For`` from a trusted proxy, for ASGI's scope.

Behind a reverse proxy on the same machine (nginx, Caddy, a load balancer speaking HTTP),
the connection's client is the proxy and its scheme is the proxy's to the server: an
application then builds ``http://`` links for an ``https://`` site (and a redirect to
HTTPS loops) and logs and rate-limits the proxy's address. The proxy says the truth in
``X-Forwarded-Proto`` and ``X-Forwarded-For``; those fields are believed only from a
client the server was told to trust (anyone else could write them), as uvicorn and
gunicorn do, by default a proxy on the same machine (``127.0.0.1``, ``::1``).

A request from a trusted client:

* ``X-Forwarded-Proto`` of ``http`` or ``https`` (case and spaces aside; of a list, the
  last value, the nearest proxy's; the last field's when several came) is the scope's
  ``scheme``; anything else is ignored.
* ``X-Forwarded-For`` (its fields joined, as RFC 9110 5.3 reads a list) is read from the
  right: each trusted address (a trusted proxy's) is passed over, and the first one that
  is not trusted is the client (``(address, 0)``: its port is not known); when every one
  is trusted, the leftmost. An entry that is no address met on the way changes nothing
  (a trusted proxy wrote it); what lies left of the client's own address is never read,
  so a client cannot hide behind garbage it wrote there.

Behind the PROXY protocol (statewire.proxy) the client is the PROXY header's, so the
fields are believed only if that client is trusted.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, MutableMapping
from typing import Any

#: trusted when nothing else is said (and ``FORWARDED_ALLOW_IPS`` is not set)
DEFAULT_TRUSTED = ("127.0.0.1", "::1")
#: the schemes ``X-Forwarded-Proto`` may set
_SCHEMES = {"http", "https"}

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Forwarded:
    """Reads the fields for the clients it trusts: ``trusted`` is addresses and networks
    (``"10.0.0.0/8"``), or ``"*"`` for every client (a server only a proxy can reach),
    given as an iterable or as one comma-separated string; ``None`` takes the
    ``FORWARDED_ALLOW_IPS`` environment variable, as uvicorn does, else
    :data:`DEFAULT_TRUSTED`. A value that is no address nor network raises ``ValueError``."""

    def __init__(self, trusted: str | Iterable[str] | None = None) -> None:
        if trusted is None:
            trusted = os.environ.get("FORWARDED_ALLOW_IPS") or DEFAULT_TRUSTED
        if isinstance(trusted, str):
            trusted = trusted.split(",")
        names = [name.strip() for name in trusted if name.strip()]
        #: every client is trusted
        self.everyone = "*" in names
        self._addresses: set[str] = set()
        self._networks: list[_Network] = []
        for name in names:
            if name == "*":
                continue
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {name!r} is no address nor network (nor *)"
                ) from None
            if network.num_addresses == 1:
                self._addresses.add(str(network.network_address))
            else:
                self._networks.append(network)

    def trusts(self, host: str | None) -> bool:
        """Whether the fields of a client at ``host`` (``None``: a UNIX socket's, trusted
        only with ``"*"``) are believed. An IPv4 address mapped into IPv6
        (``::ffff:127.0.0.1``, a dual-stack listener's) is its IPv4 address."""
        if self.everyone:
            return True
        if host is None:
            return False
        if host in self._addresses:
            return True
        if not self._networks and not host.startswith("::ffff:"):
            return False  # (the common answer, with no address parsed)
        address = _address(host)
        if address is None:
            return False
        if str(address) in self._addresses:  # (another spelling of a trusted one)
            return True
        return any(address in network for network in self._networks)

    def apply(self, scope: MutableMapping[str, Any]) -> None:
        """Set ``scope``'s ``scheme`` and ``client`` from the fields, if its client is
        trusted (see the module)."""
        client = scope["client"]
        host = client[0] if client else None
        if host not in self._addresses and not self.trusts(host):  # (a set first: no call)
            return
        proto = None
        hosts: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                hosts.extend(value.split(b","))
        if proto is not None:
            # (a list: the nearest proxy's value is the last)
            scheme = proto.rpartition(b",")[2].decode("latin-1").strip().lower()
            if scheme in _SCHEMES:
                scope["scheme"] = scheme
        if hosts:
            found = self._client_of([host.strip().decode("latin-1") for host in hosts])
            if found is not None:
                scope["client"] = (found, 0)

    def _client_of(self, hosts: list[str]) -> str | None:
        """The client an ``X-Forwarded-For`` list names: read from the right (the entries
        our trusted proxies appended), the first address that is not trusted; the leftmost
        when all are. ``None`` when an entry met on the way is no address (it was appended
        by a trusted proxy, so nothing in the list can be believed). What the client wrote
        left of its own address is never read: garbage there cannot hide it."""
        for host in reversed(hosts):
            if _address(host) is None:
                return None
            if not self.trusts(host):
                return host
        return hosts[0]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address (an IPv4 one mapped into IPv6 as its IPv4), or ``None``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


__all__ = ["DEFAULT_TRUSTED", "Forwarded"]
