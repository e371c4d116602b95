"""How frames become inputs (routes), and per-state timeouts.

A route is declared per state. The simplest is an input: every frame becomes that input,
with the frame as its one argument. :func:`by_key` maps a key of the frame (a message type
field, a command verb) to inputs; :func:`by_verb` is that for text commands. Inputs are
named by the input itself (``Inputs.put`` of a ``TypeMachineBuilder``'s protocol, a
``MethodicalMachine`` input) or by its name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from statewire.machine.errors import DefinitionError

#: an input: the input protocol's method, a ``MethodicalMachine`` input, or its name
InputRef = Any
#: a route's target: an input, or an input with a converter from the frame to its arguments
Target = Any  # an input, or ``(input, convert)``


def input_name(ref: InputRef) -> str:
    """The name of the input ``ref`` stands for."""
    if isinstance(ref, str):
        return ref
    ref = getattr(ref, "original", ref)  # a MethodicalMachine input statewire wrapped
    method = getattr(ref, "method", None)  # a MethodicalInput
    name = getattr(method if method is not None else ref, "__name__", None)
    if not isinstance(name, str):
        raise DefinitionError(f"{ref!r} is not an input (a method, or an input's name)")
    return name


class Route:
    """Turns a frame into ``(input name, arguments)``; base of the routes."""

    def inputs(self) -> set[str]:
        """Every input the route may produce (for checks and diagrams)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ToInput(Route):
    """Every frame becomes ``input(frame)``."""

    input: str

    def inputs(self) -> set[str]:
        return {self.input}


#: (input name, converter or None, (fewest, most) arguments the input takes, or None)
Entry = tuple[str, "Callable[..., tuple[Any, ...]] | None", "tuple[int, float] | None"]


@dataclass(frozen=True)
class ByKey(Route):
    """``key(frame)`` picks the input; ``convert(frame)`` (default: ``(frame,)``) gives its
    arguments. A key with no entry goes to ``unknown(frame)``; with no ``unknown`` it is an
    :class:`~statewire.machine.errors.UnroutableFrame`."""

    key: Callable[[Any], Hashable]
    table: Mapping[Hashable, Entry]
    unknown: str | None = None
    #: ``by_verb`` converts the words after the verb, not the frame
    words: bytes | None = None

    def inputs(self) -> set[str]:
        names = {name for name, _, _ in self.table.values()}
        if self.unknown is not None:
            names.add(self.unknown)
        return names


def _arity(ref: InputRef) -> tuple[int, float] | None:
    """How many arguments (after ``self``) the input ``ref`` takes, when it can be told."""
    if isinstance(ref, str):
        return None
    method: Any = getattr(ref, "method", ref)
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    fewest = sum(1 for p in positional if p.default is p.empty)
    many = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return fewest, float("inf") if many else float(len(positional))


def _targets(table: Mapping[Any, Target]) -> dict[Hashable, Entry]:
    compiled: dict[Hashable, Entry] = {}
    for key, target in table.items():
        if isinstance(target, tuple):
            ref, convert = target
            compiled[key] = (input_name(ref), convert, None)
        else:
            compiled[key] = (input_name(target), None, _arity(target))
    return compiled


def by_key(
    key: Callable[[Any], Hashable], table: Mapping[Any, Target], *, unknown: InputRef = None
) -> ByKey:
    """Route each frame by ``key(frame)``. Table values are an input (called with the
    frame) or ``(input, convert)`` where ``convert(frame)`` returns the input's arguments.
    ``key`` or ``convert`` raising ``ValueError``, ``TypeError``, ``KeyError``,
    ``IndexError`` or a :class:`grammars.GrammarError` makes the frame unroutable (a remote
    error, whose ``__cause__`` is that exception), not a crash."""
    return ByKey(key, _targets(table), None if unknown is None else input_name(unknown))


def _verb(separator: bytes) -> Callable[[Any], Hashable]:
    def verb(frame: Any) -> Hashable:
        return bytes(frame).split(separator, 1)[0]

    return verb


def by_verb(
    table: Mapping[Any, Target], *, unknown: InputRef = None, separator: bytes = b" "
) -> ByKey:
    """Route text commands (``b"PUT name 10"``) by their first word, case-sensitively.

    An input alone is called with the words after the verb as bytes (none, one, ...); when
    it is given as the input protocol's method (not a name), a command with a number of
    words the method does not take is unroutable. ``(input, convert)`` calls
    ``convert(*words)`` for the arguments (``(Inputs.put, lambda name, size: (name,
    int(size)))``): a wrong number of words or a bad number is an unroutable frame, a remote
    error. ``unknown`` gets the whole line.
    """
    route = ByKey(
        _verb(separator),
        _targets(table),
        None if unknown is None else input_name(unknown),
        separator,
    )
    return route


def make_route(spec: Any) -> Route:
    """A :class:`Route` from what a protocol declares (a route, or an input)."""
    if isinstance(spec, Route):
        return spec
    return ToInput(input_name(spec))


@dataclass(frozen=True)
class Timeout:
    """After ``seconds`` in the state, ``input`` is called (with no arguments).

    Armed on entering the state and cancelled on leaving it (Erlang's ``state_timeout``):
    other transitions that loop back to the same state do not re-arm it, but a state left
    and entered again (even within one input) does, and so does the timeout's own
    transition when it loops (a periodic tick). With ``idle=True`` it measures silence
    instead: a read postpones it, so it fires only after ``seconds`` without a byte from
    the peer.
    """

    seconds: float
    input: InputRef
    idle: bool = False

    @property
    def input_name(self) -> str:
        """The name of the input the timeout calls."""
        return input_name(self.input)
