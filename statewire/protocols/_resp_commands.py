"""The commands a RESP server knows: :class:`CommandTable` registers them by name, with
their Redis arity and their handler (:class:`Command`), and a handler raises
:class:`ReplyError` to answer an error. A table starts with the connection's own commands
(:data:`MACHINE_COMMANDS`, handled by :mod:`statewire.protocols._resp_builtins` or by the
machine itself). All of them are importable from :mod:`statewire.protocols.resp`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statewire.protocols._resp_builtins import BUILT_IN, unwatch

if TYPE_CHECKING:
    from statewire.protocols._resp_connection import RESPConnection


#: what a handler returns (any value :func:`grammars.resp.resp` builds)
Reply = Any
#: a command handler: the connection and the arguments after the command's name
Handler = Callable[["RESPConnection", list[bytes]], Reply]


class ReplyError(Exception):
    """Raised by a handler to answer an error: ``ReplyError(b"WRONGTYPE ...")``; the
    first word is the error's kind, as in Redis."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("utf-8", "replace"))
        self.text = text


@dataclass(frozen=True)
class Command:
    """A command: its lower-case ``name``, its ``arity`` as Redis counts it (the name
    included; positive: exactly that many, negative: at least minus that many) and its
    ``handler`` (``None`` for those the connection's machine answers itself)."""

    name: bytes
    arity: int
    handler: Handler | None
    #: a container command's subcommands (``CLIENT ID``...): lower-case name -> arity
    #: (counted from the container's name), checked as Redis checks them, before the
    #: handler runs or the request is queued
    subcommands: Mapping[bytes, int] | None = None

    def accepts(self, count: int) -> bool:
        """Whether a request of ``count`` words (the name included) has the right arity."""
        return fits(self.arity, count)


class CommandTable:
    """The commands a server knows, by lower-case name; it starts with the connection's
    own (``AUTH``, ``HELLO``, ``PING``, ``MULTI``... ``RESET``)."""

    def __init__(self) -> None:
        self._commands: dict[bytes, Command] = {}
        #: the same by upper-case name (what clients send), found without a lower()
        self._upper: dict[bytes, Command] = {}
        for name, arity in MACHINE_COMMANDS.items():
            self.register(name, arity, BUILT_IN.get(name))
        self.register(b"unwatch", 1, unwatch)

    def register(
        self,
        name: bytes,
        arity: int,
        handler: Handler | None,
        subcommands: Mapping[bytes, int] | None = None,
    ) -> None:
        """Add (or replace) the command ``name``."""
        command = Command(name.lower(), arity, handler, subcommands)
        self._commands[command.name] = command
        self._upper[command.name.upper()] = command

    def command(
        self, name: bytes, arity: int, subcommands: Mapping[bytes, int] | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``@table.command(b"get", 2)`` registers the function below."""

        def register(handler: Handler) -> Handler:
            self.register(name, arity, handler, subcommands)
            return handler

        return register

    def get(self, name: bytes) -> Command | None:
        """The command called ``name`` (any case), or ``None``."""
        command = self._upper.get(name)
        return self._commands.get(name.lower()) if command is None else command

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)


#: the commands the machine routes by name (their arity is checked before the machine sees
#: them: see ``_name`` in :mod:`statewire.protocols.resp`)
MACHINE_COMMANDS = {
    b"multi": 1,
    b"exec": 1,
    b"discard": 1,
    b"subscribe": -2,
    b"unsubscribe": -1,
    b"psubscribe": -2,
    b"punsubscribe": -1,
    b"ssubscribe": -2,
    b"sunsubscribe": -1,
    b"quit": -1,
    b"reset": 1,
    b"auth": -2,
    b"hello": -1,
    b"ping": -1,
    b"watch": -2,
}


def fits(arity: int, count: int) -> bool:
    """Whether ``count`` words meet a Redis ``arity`` (negative: at least)."""
    return count == arity if arity >= 0 else count >= -arity


__all__ = [
    "MACHINE_COMMANDS",
    "Command",
    "CommandTable",
    "Handler",
    "Reply",
    "ReplyError",
    "fits",
]
