"""Listening sockets, bound as soon as they are asked for, or handed to us already listening.

A port binds at once, so an address in use raises
:class:`~statewire.error.CannotListenError` before ``run()``, not when the loop starts.
A handed socket (an inherited descriptor, systemd's socket activation) is checked the same
way: a descriptor that is not a listening stream socket of the expected family is refused
there and then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from statewire.error import CannotListenError

#: whether this platform lets several sockets listen on one port (``SO_REUSEPORT``), the
#: kernel spreading the connections among them
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")

#: the families a handed stream socket may have
STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def bound_tcp(port: int, interface: str, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket bound now, so a port in use is known before ``run()``;
    with ``reuse_port``, bound with ``SO_REUSEPORT`` (refused where the platform lacks it)."""
    if reuse_port and not REUSE_PORT:
        reason = OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
        raise CannotListenError(interface, port, reason)
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((interface or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.listen(backlog)
    except (OSError, OverflowError) as error:
        sock.close()
        raise CannotListenError(interface, port, error) from error
    sock.setblocking(False)
    return sock


def bound_unix(address: str, backlog: int, mode: int) -> socket.socket:
    """A listening UNIX socket bound now, its file made with ``mode`` (a stale socket
    file is replaced; an address starting with NUL is in Linux's abstract namespace)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = address.startswith("\0")  # Linux's abstract namespace: no file at all
    bound = False
    try:
        if not abstract and _is_stale_socket(address):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
        sock.bind(address)
        bound = True
        if not abstract:
            os.chmod(address, mode)
        sock.listen(backlog)
    except (OSError, OverflowError, ValueError) as error:
        sock.close()
        if bound and not abstract:  # ours: a file left behind would look stale later
            with contextlib.suppress(OSError):
                os.unlink(address)
        raise CannotListenError(address, "", error) from error
    sock.setblocking(False)
    return sock


def adopted_stream(fd: int, family: int) -> socket.socket:
    """A duplicate of ``fd``, which must be a listening stream socket of ``family``
    (``AF_INET``, ``AF_INET6`` or ``AF_UNIX``); ``fd`` itself stays the caller's to close."""
    where = f"file descriptor {fd}"
    if family not in STREAM_FAMILIES:
        raise CannotListenError(where, "", ValueError(f"unsupported address family {family!r}"))
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as error:
        raise CannotListenError(where, "", error) from error
    problem = None
    if sock.type != socket.SOCK_STREAM:
        problem = "is not a stream socket"
    elif sock.family != family:
        problem = f"is {sock.family.name}, not {socket.AddressFamily(family).name}"
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "is not listening"
    if problem is not None:
        sock.close()
        raise CannotListenError(where, "", ValueError(f"the socket {problem}"))
    sock.setblocking(False)
    return sock


def _is_stale_socket(path: str) -> bool:
    """Whether ``path`` is a socket file nobody listens on any more (never a file of
    another kind: that one is the user's, and binding over it fails as "in use")."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a live server with a full backlog must not block us
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:  # in progress, would block, refused for another reason: someone is there
        return False
    finally:
        probe.close()
    return False
