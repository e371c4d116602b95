"""What a RESP connection answers by itself, in Redis's words: the refusals of its states,
and the commands it runs with a handler of its own (``AUTH``, ``HELLO``, ``PING``,
``WATCH``, ``UNWATCH``, ``SSUBSCRIBE`` at ``EXEC``). The connection's machine, in
:mod:`statewire.protocols.resp`, decides which state refuses what, and when each runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from grammars.resp import OK, Error, Simple

if TYPE_CHECKING:
    from statewire.protocols._resp_connection import RESPConnection

#: a handler: the connection and the arguments after the command's name; its reply
Handler = Callable[["RESPConnection", list[bytes]], Any]

NOAUTH = Error(b"NOAUTH Authentication required.")
WRONGPASS = Error(b"WRONGPASS invalid username-password pair or user is disabled.")
#: what RESP2 pub/sub mode allows
PUBSUB_ONLY = (
    "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
)


def one_line(text: bytes) -> Error:
    """An error reply whose text cannot break the reply's line (Redis does the same)."""
    return Error(text.replace(b"\r", b" ").replace(b"\n", b" "))


def refusal(state: str, name: str, verb: bytes) -> Error:
    """What Redis answers to a command the connection's state does not take."""
    if state == "anonymous":
        return NOAUTH
    if state in ("queuing", "queuing_subscribed"):
        if name == "multi":
            return Error(b"ERR MULTI calls can not be nested")
        if name == "watch":
            return Error(b"ERR WATCH inside MULTI is not allowed")
        return Error(b"ERR Command not allowed inside a transaction")
    if state == "subscribed":
        return one_line(b"ERR Can't execute '%s': %s" % (verb.lower(), PUBSUB_ONLY.encode()))
    return Error(b"ERR %s without MULTI" % name.upper().encode())


def exec_abort(error: Error) -> Error:
    """What Redis answers to an ``EXEC`` it refuses before it runs (of the wrong arity, not
    authenticated, in RESP2 pub/sub mode): the refusal, as the transaction's end."""
    text = error.text[4:] if error.text.startswith(b"ERR ") else error.text
    return Error(b"EXECABORT Transaction discarded because of: " + text)


def auth(core: RESPConnection, args: list[bytes]) -> Any:
    """``AUTH [user] password``: only the ``default`` user exists."""
    if len(args) > 2:
        return Error(b"ERR syntax error")
    password = core.factory.password
    user = args[0] if len(args) == 2 else b"default"
    if password is None:
        if len(args) == 2:  # as Redis: the default user takes any password, no other user
            return OK if user == b"default" else WRONGPASS
        return Error(
            b"ERR AUTH <password> called without any password configured for the default "
            b"user. Are you sure your configuration is correct?"
        )
    return OK if (user, args[-1]) == (b"default", password) else WRONGPASS


def hello(core: RESPConnection, args: list[bytes]) -> Any:
    """``HELLO [protover [AUTH user pass] [SETNAME name]]``: the server's description,
    in the RESP version asked for."""
    version = core.protocol_version
    if args:
        try:
            version = int(args[0])
        except ValueError:
            return Error(b"ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return Error(b"NOPROTO unsupported protocol version")
    options, name = args[1:], None
    while options:
        option = options[0].lower()
        if option == b"auth" and len(options) >= 3:
            answer = auth(core, options[1:3])
            if answer is not OK:
                return answer
            options = options[3:]
        elif option == b"setname" and len(options) >= 2:
            name = options[1]
            options = options[2:]
        else:
            return one_line(b"ERR Syntax error in HELLO option '%s'" % options[0])
    if name is not None:
        core.client_name = name
    core.use_protocol(version)
    return {
        b"server": b"redis",
        b"version": core.factory.version,
        b"proto": version,
        b"id": core.client_id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


_PONG = Simple(b"PONG")


def ping(core: RESPConnection, args: list[bytes]) -> Any:
    if len(args) > 1:
        return Error(b"ERR wrong number of arguments for 'ping' command")
    if core.protocol_version == 2 and core.listening:  # pub/sub mode: a message's shape
        return [b"pong", args[0] if args else b""]
    return args[0] if args else _PONG


def watch(core: RESPConnection, args: list[bytes]) -> Any:
    """``WATCH key...`` (inside ``MULTI`` the machine refuses it)."""
    core.watch(args)
    return OK


def unwatch(core: RESPConnection, args: list[bytes]) -> Any:
    core.unwatch()
    return OK


def ssubscribe_in_exec(core: RESPConnection, args: list[bytes]) -> Any:
    """``SSUBSCRIBE`` queued in a transaction, at ``EXEC``: Redis refuses it so."""
    return Error(b"ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client")


#: the machine's commands that run a handler as well (in ``ready``, say, or at ``EXEC``)
BUILT_IN: dict[bytes, Handler] = {
    b"auth": auth,
    b"hello": hello,
    b"ping": ping,
    b"watch": watch,
    b"ssubscribe": ssubscribe_in_exec,
}


__all__ = [
    "BUILT_IN",
    "NOAUTH",
    "PUBSUB_ONLY",
    "WRONGPASS",
    "auth",
    "exec_abort",
    "hello",
    "one_line",
    "ping",
    "refusal",
    "unwatch",
    "watch",
]
