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
    fd:3                              systemd:domain=INET:index=0

``fd:`` serves a listening socket this process was handed as that descriptor (``domain=``
INET, INET6 or UNIX; default: the socket's own), ``systemd:`` one that systemd's socket
activation handed (``LISTEN_FDS``, ``LISTEN_PID``; by ``index=`` from 0, or by ``name=``
from ``LISTEN_FDNAMES``; ``domain=`` is required there, as in Twisted). Both take
``privateKey=`` and ``certKey=`` as ``ssl:`` does, for a handed socket served with TLS (a
statewire addition: ``serve --workers`` hands its ``ssl:`` sockets to its workers so).

TLS descriptions (``ssl:``, and ``fd:``/``systemd:`` with a key) also take, as statewire
additions (:func:`ssl_context` says what each does):

* ``passwordEnv=NAME``: the key's passphrase, from the environment variable ``NAME`` (a
  secret in the environment, not on a command line any user may read);
* ``caCerts=FILE``: the authorities whose client certificates are accepted, and
  ``verify=none|optional|required`` (default ``required`` with ``caCerts=``, else
  ``none``);
* ``ciphers=LIST``: an OpenSSL cipher list (separated by commas, or colons escaped);
* ``minVersion=`` and ``maxVersion=``: ``1.2`` or ``1.3``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Any

from statewire._reactor import Port, Reactor, ssl_context
from statewire._tls import check_server_context
from statewire.hostname import HostnameEndpoint

__all__ = [
    "AdoptedStreamServerEndpoint",
    "HostnameEndpoint",
    "SSL4ClientEndpoint",
    "SSL4ServerEndpoint",
    "TCP4ClientEndpoint",
    "TCP4ServerEndpoint",
    "TCP6ServerEndpoint",
    "UNIXClientEndpoint",
    "UNIXServerEndpoint",
    "clientFromString",
    "descriptionContext",
    "handedDescriptor",
    "serverDescription",
    "serverFromString",
    "serverParts",
    "ssl_context",
    "wantsTLS",
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


class AdoptedStreamServerEndpoint:
    """Serve a stream socket that is listening already, handed to this process as the
    file descriptor ``fileno`` (by systemd, a supervisor, ``fd:``), as Twisted's.

    ``listen`` adopts it (:meth:`~statewire._reactor.Reactor.adoptStreamPort`) and closes
    ``fileno`` (the port keeps its own duplicate); it can listen only once. With
    ``context`` (``privateKey=``/``certKey=`` in the description, a statewire addition)
    its connections are TLS.
    """

    def __init__(
        self,
        reactor: Reactor,
        fileno: int,
        addressFamily: int,
        context: ssl.SSLContext | None = None,
    ):
        self.reactor = reactor
        self.fileno = fileno
        self.addressFamily = addressFamily
        self.context = context
        self._used = False

    def listen(self, factory: Any) -> asyncio.Future[Port]:
        """Adopt the socket now; the result resolves to the port once it accepts."""
        if self._used:
            raise RuntimeError(f"file descriptor {self.fileno} was adopted already")
        port = self.reactor.adoptStreamPort(self.fileno, self.addressFamily, factory, self.context)
        self._used = True
        os.close(self.fileno)
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
    "fd": ("fileno", "domain", "privateKey", "certKey"),
    "systemd": ("domain", "index", "name", "privateKey", "certKey"),
}
#: the TLS choices beyond the key and certificate (keywords only), by the ``ssl_context``
#: keyword each gives
TLS_CHOICES = {
    "passwordEnv": "password",
    "caCerts": "cafile",
    "verify": "verify",
    "ciphers": "ciphers",
    "minVersion": "min_version",
    "maxVersion": "max_version",
}

#: the ``domain=`` of ``fd:`` and ``systemd:`` descriptions (Twisted's names)
_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}
#: the first descriptor systemd hands (``SD_LISTEN_FDS_START``)
_SYSTEMD_FIRST_FD = 3


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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        from statewire.proxy import trusted_networks

        trusted_networks(trusted or ())  # refused now, with the description, if bad
        self.inner = inner
        self.versions = versions
        self.trusted = trusted
        self.timeout = timeout
        #: the TLS that follows the header (``ssl:``, or ``fd:`` with a key, and proxy=)
        self.tls = tls

    def listen(self, factory: Any) -> Any:
        """Listen with ``factory`` behind the PROXY protocol."""
        from statewire.proxy import ProxyProtocolFactory

        proxied = ProxyProtocolFactory(
            factory, self.versions, trusted=self.trusted, timeout=self.timeout, tls=self.tls
        )
        return self.inner.listen(proxied)


def serverFromString(reactor: Reactor, description: str) -> Any:
    """A server endpoint from a description such as ``"tcp:8007:interface=127.0.0.1"``;
    ``proxy=v2`` (and ``proxyTrusted``, ``proxyTimeout``) puts it behind the PROXY
    protocol (see :data:`_PROXY_OPTIONS`)."""
    kind, values = serverParts(description)
    # behind a proxy, TLS starts after the PROXY header: the port is plain, the relay
    # starts TLS (HAProxy sends the header before the TLS stream it passes through)
    endpoint, tls = _server(reactor, description, kind, values, "proxy" in values)
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
        return ProxyServerEndpoint(endpoint, versions, networks, seconds, tls)
    except ValueError as error:  # a bad network
        raise ValueError(f"proxyTrusted in {description!r}: {error}") from None


def serverParts(description: str) -> tuple[str, dict[str, str]]:
    """The kind of a server description and its values by name (positional values named
    too): ``"tcp:8007:proxy=v1"`` -> ``("tcp", {"port": "8007", "proxy": "v1"})``. An
    unknown kind or option raises ``ValueError`` naming it."""
    kind, args, kwargs = _split(description)
    if kind not in _SERVER_OPTIONS:
        raise ValueError(f"unknown endpoint type {kind!r} in {description!r}")
    names = _SERVER_OPTIONS[kind]
    extra = (*TLS_CHOICES, *_PROXY_OPTIONS) if "privateKey" in names else _PROXY_OPTIONS
    return kind, _take(description, args, kwargs, names + extra, 1, len(names))


def serverDescription(kind: str, values: dict[str, str]) -> str:
    """The description of ``kind`` and ``values``, colons and backslashes escaped (the
    inverse of :func:`serverParts`)."""

    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    return ":".join([kind, *(f"{escaped(k)}={escaped(v)}" for k, v in values.items())])


def handedDescriptor(description: str) -> tuple[int, int]:
    """The file descriptor and address family an ``fd:`` or ``systemd:`` description
    names; ``ValueError`` when it names none (systemd handed nothing to this process, an
    index past what it handed, a descriptor that is not a socket...)."""
    kind, values = serverParts(description)
    if kind == "fd":
        fileno = _int(values["fileno"], "fileno", description)
    elif kind == "systemd":
        fileno = _systemd_descriptor(description, values)
    else:
        raise ValueError(f"{description!r} names no handed socket (fd: or systemd:)")
    domain = values.get("domain")
    if domain is not None:
        if domain not in _DOMAINS:
            raise ValueError(f"domain in {description!r} is not INET, INET6 or UNIX")
        return fileno, _DOMAINS[domain]
    duplicate = -1
    try:
        duplicate = os.dup(fileno)
        with socket.socket(fileno=duplicate) as sock:
            duplicate = -1  # (the socket owns it now)
            return fileno, int(sock.family)
    except OSError as error:
        if duplicate >= 0:
            os.close(duplicate)
        raise ValueError(
            f"file descriptor {fileno} in {description!r} is not an open socket: "
            f"{error.strerror or error}"
        ) from None


def _systemd_descriptor(description: str, values: dict[str, str]) -> int:
    """The descriptor systemd handed for ``index=`` or ``name=`` (sd_listen_fds(3))."""
    if ("index" in values) == ("name" in values):
        raise ValueError(f"{description!r} needs one of index= or name=")
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if pid is None or count is None:
        raise ValueError(f"{description!r}: systemd handed no sockets (no LISTEN_FDS)")
    if pid != str(os.getpid()):
        raise ValueError(f"{description!r}: LISTEN_PID={pid} names another process")
    handed = _int(count, "LISTEN_FDS", description)
    if "name" in values:
        names = os.environ.get("LISTEN_FDNAMES", "").split(":")[:handed]
        if values["name"] not in names:
            raise ValueError(
                f"{description!r}: no socket named {values['name']!r} in LISTEN_FDNAMES"
            )
        index = names.index(values["name"])
    else:
        index = _int(values["index"], "index", description)
        if index >= handed:
            raise ValueError(
                f"{description!r}: index {index}, but systemd handed {handed} sockets"
            )
    return _SYSTEMD_FIRST_FD + index


def descriptionContext(
    description: str,
    values: dict[str, str] | str | bytes | os.PathLike[str] | None = None,
    keyfile: str | bytes | os.PathLike[str] | None = None,
    *,
    certfile: str | bytes | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """The server TLS context a description asks for (``values``: its values, as
    :func:`serverParts` gives them; parsed from ``description`` when ``None``): the key of
    ``privateKey=``, the certificate of ``certKey=`` (the key's file when absent), and the
    TLS choices (module docstring), tried on a client's hello in memory. A ``ValueError``
    naming the description when they do not load or do not make sense (``serve
    --workers`` checks its ``ssl:`` ones so). The older form, ``(description, certfile,
    keyfile)``, is taken too (positional or by keyword, paths as ``str`` or
    ``os.PathLike``)."""
    if isinstance(values, (str, bytes, os.PathLike)):  # (description, certfile, keyfile)
        if certfile is not None:
            raise TypeError("descriptionContext(): the certificate given twice")
        certfile, values = values, None
    if certfile is not None:
        if values is not None:
            raise TypeError("descriptionContext(): the description's values or certfile")
        cert = os.fsdecode(certfile)  # (the key in the certificate's file when absent)
        values = {"certKey": cert, "privateKey": cert if keyfile is None else os.fsdecode(keyfile)}
    elif keyfile is not None:
        raise TypeError("descriptionContext(): keyfile goes with certfile")
    elif values is None:
        values = serverParts(description)[1]
    key = values.get("privateKey")
    if key is None:
        raise ValueError(f"{description!r} lacks privateKey")
    key = _file(key, "privateKey", description)
    cert = _file(values.get("certKey", key), "certKey", description)
    choices = {TLS_CHOICES[k]: v for k, v in values.items() if k in TLS_CHOICES}
    if "cafile" in choices:
        choices["cafile"] = _file(choices["cafile"], "caCerts", description)
    if "password" in choices:
        name = choices["password"]
        if name not in os.environ:
            raise ValueError(f"passwordEnv in {description!r}: {name} is not set")
        choices["password"] = os.environ[name]
    try:
        context = ssl_context(cert, key, **choices)
    except (ssl.SSLError, OSError) as error:
        wrong = " (a wrong passphrase?)" if "password" in choices else ""
        raise ValueError(
            f"cannot load the key or certificate of {description!r}{wrong}: {error}"
        ) from None
    except ValueError as error:  # (a choice that makes no sense, or a passphrase missing)
        raise ValueError(f"{description!r}: {error}") from None
    # (a cipher list the key cannot serve with, said here rather than at the listen)
    check_server_context(context, repr(description))
    return context


def wantsTLS(kind: str, values: dict[str, str]) -> bool:
    """Whether a server description asks for TLS: ``ssl:``, or a key, a certificate or
    a TLS choice on ``fd:``/``systemd:`` (which then needs its key: never served plain)."""
    return kind == "ssl" or any(name in values for name in ("privateKey", "certKey", *TLS_CHOICES))


def _server(
    reactor: Reactor, description: str, kind: str, values: dict[str, str], proxied: bool
) -> tuple[Any, ssl.SSLContext | None]:
    """The endpoint of a description, and, when ``proxied`` and it asks for TLS, the
    context the PROXY relay starts TLS with after the header (the endpoint then plain)."""
    if kind in ("fd", "systemd"):
        context = descriptionContext(description, values) if wantsTLS(kind, values) else None
        fileno, family = handedDescriptor(description)
        if proxied:
            return AdoptedStreamServerEndpoint(reactor, fileno, family), context
        return AdoptedStreamServerEndpoint(reactor, fileno, family, context), None
    backlog = _int(values.get("backlog", "50"), "backlog", description, (1 << 31) - 1)
    if kind == "unix":
        try:
            mode = int(values.get("mode", "666"), 8)
        except ValueError:
            raise ValueError(f"mode in {description!r} is not an octal number") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"mode in {description!r} is not in 0 to 777 (octal)")
        return UNIXServerEndpoint(reactor, values["address"], backlog, mode), None
    port = _port(values["port"], description)
    if kind == "tcp6":
        return TCP6ServerEndpoint(reactor, port, backlog, values.get("interface", "::")), None
    interface = values.get("interface", "")
    if kind == "tcp":
        return TCP4ServerEndpoint(reactor, port, backlog, interface), None
    context = descriptionContext(description, values)
    if proxied:
        return TCP4ServerEndpoint(reactor, port, backlog, interface), context
    return SSL4ServerEndpoint(reactor, port, context, backlog, interface), None


#: each client endpoint type's options, and how many of them are required
_CLIENT_OPTIONS = {
    "tcp": (("host", "port", "timeout"), 2),
    "unix": (("path", "timeout"), 1),
    "hostname": (("host", "port", "timeout", "attemptDelay", "bindAddress"), 2),
}


def clientFromString(reactor: Reactor, description: str) -> Any:
    """A client endpoint from a description such as ``"tcp:host=127.0.0.1:port=8007"``.

    ``tcp:host=H:port=P[:timeout=S]`` is a :class:`TCP4ClientEndpoint`, as in Twisted
    (``H`` a name or an address, the loop's ``create_connection`` trying its addresses one
    after the other), ``unix:path=F[:timeout=S]`` a :class:`UNIXClientEndpoint`.

    ``hostname:host=H:port=P[:timeout=S][:attemptDelay=S][:bindAddress=A]`` is a
    :class:`HostnameEndpoint` (Happy Eyeballs: RFC 8305). Twisted has no description for
    it; statewire names it after the class and its arguments, and leaves ``tcp:`` as
    Twisted has it. ``bindAddress=A`` binds each attempt to address ``A``, any port (as
    Twisted's ``tcp:`` client does); an IPv6 ``A`` escapes its colons (``\\:``).
    """
    kind, args, kwargs = _split(description)
    if kind not in _CLIENT_OPTIONS:
        raise ValueError(f"unknown endpoint type {kind!r} in {description!r}")
    names, required = _CLIENT_OPTIONS[kind]
    values = _take(description, args, kwargs, names, required)
    timeout = _client_seconds(values.get("timeout", "30"), "timeout", description)
    if kind == "unix":
        return UNIXClientEndpoint(reactor, values["path"], timeout)
    port = _port(values["port"], description)
    if kind == "tcp":
        return TCP4ClientEndpoint(reactor, values["host"], port, timeout)
    delay = _client_seconds(values.get("attemptDelay", "0.3"), "attemptDelay", description)
    bind = values.get("bindAddress")
    return HostnameEndpoint(
        reactor, values["host"], port, timeout, None if bind is None else (bind, 0), delay
    )


def _client_seconds(value: str, what: str, description: str) -> float:
    """``value`` as a finite number of seconds >= 0, else a ``ValueError`` naming it."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{what} in {description!r} is not a number of seconds >= 0")
    return seconds
