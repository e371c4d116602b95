"""Endpoints: where to listen or connect, as objects or as Twisted's description strings.

``listen(factory)`` binds at once (a port in use raises
:class:`~statewire.error.CannotListenError` there and then) and returns an awaitable that
resolves to the listening port once it accepts connections; it need not be awaited when the
reactor is run afterwards, as in Twisted::

    TCP4ServerEndpoint(reactor, 8007).listen(factory)
    reactor.run()

or, inside an asyncio program::

    port = await TCP4ServerEndpoint(reactor, 8007).listen(factory)

``connect(factory)`` returns an awaitable resolving to the connected protocol.

Description strings (:func:`serverFromString`, :func:`clientFromString`) follow Twisted's
syntax: ``type:positional:key=value``, with ``\\:`` for a colon inside a value::

    tcp:8007:interface=127.0.0.1      tcp6:8007:interface=\\:\\:1
    unix:/tmp/echo.sock               ssl:8443:privateKey=key.pem:certKey=cert.pem
    tcp:host=127.0.0.1:port=8007      unix:path=/tmp/echo.sock
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

from statewire._reactor import Port, Reactor, ssl_context

__all__ = [
    "SSL4ClientEndpoint",
    "SSL4ServerEndpoint",
    "TCP4ClientEndpoint",
    "TCP4ServerEndpoint",
    "TCP6ServerEndpoint",
    "UNIXClientEndpoint",
    "UNIXServerEndpoint",
    "clientFromString",
    "serverFromString",
    "ssl_context",
]


class TCP4ServerEndpoint:
    """Listen on an IPv4 TCP port (``interface=""``: every IPv4 interface)."""

    def __init__(self, reactor: Reactor, port: int, backlog: int = 50, interface: str = ""):
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> asyncio.Future[Port]:
        """Bind now; the result resolves to the port once it accepts connections."""
        port = self.reactor.listenTCP(self.port, factory, self.backlog, self.interface)
        return port.ready


class TCP6ServerEndpoint(TCP4ServerEndpoint):
    """Listen on an IPv6 TCP port (``interface="::"`` by default: every IPv6 interface)."""

    def __init__(self, reactor: Reactor, port: int, backlog: int = 50, interface: str = "::"):
        super().__init__(reactor, port, backlog, interface)


class SSL4ServerEndpoint:
    """Listen on an IPv4 TCP port with TLS (a stdlib ``ssl.SSLContext``)."""

    def __init__(
        self,
        reactor: Reactor,
        port: int,
        sslContextFactory: ssl.SSLContext,
        backlog: int = 50,
        interface: str = "",
    ):
        self.reactor = reactor
        self.port = port
        self.context = sslContextFactory
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> asyncio.Future[Port]:
        """Bind now; the result resolves to the port once it accepts connections."""
        port = self.reactor.listenSSL(
            self.port, factory, self.context, self.backlog, self.interface
        )
        return port.ready


class UNIXServerEndpoint:
    """Listen on a UNIX socket path."""

    def __init__(self, reactor: Reactor, address: str, backlog: int = 50, mode: int = 0o666):
        self.reactor = reactor
        self.address = address
        self.backlog = backlog
        self.mode = mode

    def listen(self, factory: Any) -> asyncio.Future[Port]:
        """Bind now; the result resolves to the port once it accepts connections."""
        port = self.reactor.listenUNIX(self.address, factory, self.backlog, self.mode)
        return port.ready


class TCP4ClientEndpoint:
    """Connect to a TCP host and port."""

    def __init__(self, reactor: Reactor, host: str, port: int, timeout: float = 30):
        self.reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout

    def connect(self, factory: Any) -> asyncio.Future[Any]:
        """Start connecting; the result resolves to the connected protocol."""
        return self.reactor.connectTCP(self.host, self.port, factory, self.timeout).connected


class UNIXClientEndpoint:
    """Connect to a UNIX socket path."""

    def __init__(self, reactor: Reactor, path: str, timeout: float = 30):
        self.reactor = reactor
        self.path = path
        self.timeout = timeout

    def connect(self, factory: Any) -> asyncio.Future[Any]:
        """Start connecting; the result resolves to the connected protocol."""
        return self.reactor.connectUNIX(self.path, factory, self.timeout).connected


class SSL4ClientEndpoint:
    """Connect to a TCP host and port with TLS (a stdlib client ``ssl.SSLContext``)."""

    def __init__(
        self, reactor: Reactor, host: str, port: int, context: ssl.SSLContext, timeout: float = 30
    ):
        self.reactor = reactor
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout

    def connect(self, factory: Any) -> asyncio.Future[Any]:
        """Start connecting; the result resolves to the connected protocol."""
        connector = self.reactor.connectSSL(
            self.host, self.port, factory, self.context, self.timeout
        )
        return connector.connected


def _split(description: str) -> tuple[str, list[str], dict[str, str]]:
    """``"tcp:8007:interface=127.0.0.1"`` -> ``("tcp", ["8007"], {"interface": ...})``."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, "\\"))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    kind, *rest = parts
    args = [p for p in rest if "=" not in p]
    kwargs = dict(p.split("=", 1) for p in rest if "=" in p)
    return kind, args, kwargs


def _int(value: str, what: str, description: str, top: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} in {description!r} is not a number") from None
    if number < 0 or (top is not None and number > top):
        bounds = f"0 to {top}" if top is not None else ">= 0"
        raise ValueError(f"{what} {value!r} in {description!r} is not in {bounds}")
    return number


def _port(value: str, description: str) -> int:
    return _int(value, "port", description, 65535)


def _file(path: str, what: str, description: str) -> str:
    """``path`` if it names a readable file, else a ``ValueError`` naming it."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(
            f"{what} file {path!r} in {description!r} does not exist or is unreadable"
        )
    return path


def _take(
    description: str,
    args: list[str],
    kwargs: dict[str, str],
    names: tuple[str, ...],
    required: int,
    positional: int | None = None,
) -> dict[str, str]:
    """Positional then keyword values for ``names`` (the first ``positional`` of them may
    be given by position; default all); the first ``required`` must be there."""
    most = len(names) if positional is None else positional
    if len(args) > most:
        raise ValueError(f"too many values in {description!r}: {':'.join(args[most:])}")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise ValueError(f"unknown option {key!r} in {description!r}")
        if key in values:
            raise ValueError(f"{key!r} given twice in {description!r}")
        values[key] = value
    missing = [name for name in names[:required] if name not in values]
    if missing:
        raise ValueError(f"{description!r} lacks {', '.join(missing)}")
    return values


_SERVER_OPTIONS = {
    "tcp": ("port", "backlog", "interface"),
    "tcp6": ("port", "backlog", "interface"),
    "unix": ("address", "backlog", "mode", "lockfile"),
    "ssl": ("port", "privateKey", "certKey", "backlog", "interface"),
}


#: options any server endpoint takes: its connections come through a proxy speaking the
#: PROXY protocol (``proxy=v1|v2|any``), from these networks only (``proxyTrusted``, CIDRs
#: separated by commas, ``unix`` for UNIX-socket peers; default: any peer), whose header
#: must come within ``proxyTimeout`` seconds (default 5)
_PROXY_OPTIONS = ("proxy", "proxyTrusted", "proxyTimeout")
_PROXY_VERSIONS = {"v1": ("v1",), "v2": ("v2",), "any": ("v1", "v2")}


class ProxyServerEndpoint:
    """A server endpoint whose connections start with a PROXY protocol header (see
    :class:`statewire.proxy.ProxyProtocolFactory`): the factory's protocols see the
    clients' own addresses."""

    def __init__(
        self,
        inner: Any,
        versions: tuple[str, ...],
        trusted: list[str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        from statewire.proxy import trusted_networks

        trusted_networks(trusted or ())  # refused now, with the description, if bad
        self.inner = inner
        self.versions = versions
        self.trusted = trusted
        self.timeout = timeout

    def listen(self, factory: Any) -> Any:
        """Listen with ``factory`` behind the PROXY protocol."""
        from statewire.proxy import ProxyProtocolFactory

        proxied = ProxyProtocolFactory(
            factory, self.versions, trusted=self.trusted, timeout=self.timeout
        )
        return self.inner.listen(proxied)


def serverFromString(reactor: Reactor, description: str) -> Any:
    """A server endpoint from a description such as ``"tcp:8007:interface=127.0.0.1"``;
    ``proxy=v2`` (and ``proxyTrusted``, ``proxyTimeout``) puts it behind the PROXY
    protocol (see :data:`_PROXY_OPTIONS`)."""
    kind, args, kwargs = _split(description)
    if kind not in _SERVER_OPTIONS:
        raise ValueError(f"unknown endpoint type {kind!r} in {description!r}")
    names = _SERVER_OPTIONS[kind]
    values = _take(description, args, kwargs, names + _PROXY_OPTIONS, 1, len(names))
    endpoint = _server(reactor, description, kind, values)
    if "proxy" not in values:
        for option in _PROXY_OPTIONS[1:]:
            if option in values:
                raise ValueError(f"{option!r} without proxy= in {description!r}")
        return endpoint
    versions = _PROXY_VERSIONS.get(values["proxy"])
    if versions is None:
        raise ValueError(f"proxy in {description!r} is not v1, v2 or any")
    trusted = values.get("proxyTrusted")
    timeout = values.get("proxyTimeout", "5")
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValueError(f"proxyTimeout in {description!r} is not a number of seconds > 0")
    networks = None if trusted is None else [n.strip() for n in trusted.split(",") if n]
    try:
        return ProxyServerEndpoint(endpoint, versions, networks, seconds)
    except ValueError as error:  # a bad network
        raise ValueError(f"proxyTrusted in {description!r}: {error}") from None


def _server(reactor: Reactor, description: str, kind: str, values: dict[str, str]) -> Any:
    backlog = _int(values.get("backlog", "50"), "backlog", description, (1 << 31) - 1)
    if kind == "unix":
        try:
            mode = int(values.get("mode", "666"), 8)
        except ValueError:
            raise ValueError(f"mode in {description!r} is not an octal number") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"mode in {description!r} is not in 0 to 777 (octal)")
        return UNIXServerEndpoint(reactor, values["address"], backlog, mode)
    port = _port(values["port"], description)
    if kind == "tcp":
        return TCP4ServerEndpoint(reactor, port, backlog, values.get("interface", ""))
    if kind == "tcp6":
        return TCP6ServerEndpoint(reactor, port, backlog, values.get("interface", "::"))
    key = values.get("privateKey")
    if key is None:
        raise ValueError(f"{description!r} lacks privateKey")
    key = _file(key, "privateKey", description)
    cert = _file(values.get("certKey", key), "certKey", description)
    try:
        context = ssl_context(cert, key)
    except ssl.SSLError as error:
        raise ValueError(
            f"cannot load the key or certificate of {description!r}: {error}"
        ) from None
    return SSL4ServerEndpoint(reactor, port, context, backlog, values.get("interface", ""))


_CLIENT_OPTIONS = {
    "tcp": ("host", "port", "timeout"),
    "unix": ("path", "timeout"),
}


def clientFromString(reactor: Reactor, description: str) -> Any:
    """A client endpoint from a description such as ``"tcp:host=127.0.0.1:port=8007"``."""
    kind, args, kwargs = _split(description)
    if kind not in _CLIENT_OPTIONS:
        raise ValueError(f"unknown endpoint type {kind!r} in {description!r}")
    names = _CLIENT_OPTIONS[kind]
    values = _take(description, args, kwargs, names, len(names) - 1)
    try:
        timeout = float(values.get("timeout", "30"))
    except ValueError:
        raise ValueError(f"timeout in {description!r} is not a number") from None
    if kind == "unix":
        return UNIXClientEndpoint(reactor, values["path"], timeout)
    port = _port(values["port"], description)
    return TCP4ClientEndpoint(reactor, values["host"], port, timeout)
