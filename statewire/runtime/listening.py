"""Listening sockets, bound as soon as they are asked for.

A port binds at once, so an address in use raises
:class:`~statewire.error.CannotListenError` before ``run()``, not when the loop starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from statewire.error import CannotListenError


def bound_tcp(port: int, interface: str, backlog: int) -> socket.socket:
    """A listening TCP socket bound now, so a port in use is known before ``run()``."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
