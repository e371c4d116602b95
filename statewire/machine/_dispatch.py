"""Frames to inputs: the handler each state gives the framer (part of the
:class:`~statewire.machine.Engine`, as one of its bases).

A state's handler is made once per connection, when the state is first entered (see
``Engine._sw_entry``), from its route:

* a *direct* handler when the state routes every frame to one input whose transition
  loops back to the same state with one plain output (``TypeMachineBuilder`` only): the
  output itself, bound to the machine and core (or, for :func:`forward`, the protocol's
  hook). Nothing of statewire runs between two such frames;
* the compiled transition when that input leaves the state;
* for ``by_verb`` and ``by_key`` routes, a handler whose common cases (an input looping
  here taking the frame or its words as they are, an input leaving by its compiled
  transition) cost the key and one call; anything else takes the general path,
  :meth:`Dispatch._sw_keyed`, which refuses what cannot be routed (a remote error, state
  unchanged) and runs the full dispatch (:meth:`Dispatch._sw_dispatch`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from grammars import GrammarError
from statewire.machine._plan import Plan, VerbEntry
from statewire.machine._routes import ByKey, ToInput
from statewire.machine._style import entered_anyway
from statewire.machine._styles import Handler, LoopTarget, Transit
from statewire.machine.errors import (
    BadArguments,
    RemoteProtocolError,
    UnexpectedInput,
    UnknownKey,
    UnroutableFrame,
    shown,
)

#: what a route's key or converter may raise for a frame it cannot make sense of (a grammar's
#: refusal too: a converter may parse the frame further)
_BAD_FRAME = (ValueError, TypeError, LookupError, GrammarError)

#: a ``by_verb`` verb whose input leaves the state: its compiled transition, its converter,
#: the fewest and most words it takes (without a converter)
_Moving = tuple[Transit, Any, float, float]

#: the key not computed yet (``_sw_keyed``'s default)
_NO_KEY: Any = object()


class _NoInput(LookupError):
    """A frame's key has no input (raised and caught inside the dispatch)."""


class Dispatch:
    """The frame handlers of a connection's states (a base of the engine)."""

    __slots__ = ()

    if TYPE_CHECKING:  # what the engine provides
        _sw_plan: Plan
        _sw_core: Any
        _sw_impl: Any
        _sw_traced: bool
        _sw_frame: Any

        @property
        def state(self) -> str: ...
        def _sw_remote(self, error: RemoteProtocolError) -> None: ...
        def _sw_wait(self, result: object) -> None: ...
        def _sw_sync(self) -> None: ...
        def _sw_entry(self, state: Any) -> Callable[[Any], None]: ...

    def _sw_handler(self, state: Any) -> Handler:
        plan = self._sw_plan
        route = plan.routes.get(state)
        if route is None or state not in plan.framings:  # no framing: it reads nothing
            return self._sw_unroutable
        traced = self._sw_traced  # then every frame takes the path the tracer sees
        if isinstance(route, ToInput):
            name = route.input
            if plan.style.accepts(state, name) and not traced:
                direct = plan.style.loop_handler(self._sw_impl, self, state, name)
                if direct is not None:
                    return direct
                transit = plan.transits(state, route, self._sw_entry).get(name)
                if transit is not None:
                    return partial(transit, self)
            return partial(self._sw_frame_input, name)
        assert isinstance(route, ByKey)
        if traced:  # every frame by the general path
            return partial(self._sw_keyed, route, {}, {})
        # inputs that loop here with one plain output are called straight away, inputs
        # that leave the state by their compiled transition (tables shared by every
        # connection: a connection's handler is one closure)
        loops = plan.loops(state, route)
        transits = plan.transits(state, route, self._sw_entry)
        shared = plan.shared
        if route.words is not None:
            moving = shared.get(("moving", state))
            if moving is None:
                moving = shared["moving", state] = {}
                for verb, (name, convert, arity) in route.table.items():
                    transit = transits.get(name)
                    if transit is not None:
                        fewest, most = arity if arity is not None else (0, float("inf"))
                        moving[verb] = (transit, convert, fewest, most)
            return self._sw_verbs(route, loops, plan.verbs(state, route), moving, transits)
        tables = shared.get(("keys", state))
        if tables is None:
            looping: dict[Any, tuple[Any, str | None, Any]] = {}
            leaving: dict[Any, tuple[Transit, Any]] = {}
            for key, (name, convert, _) in route.table.items():
                if name in loops:
                    function, hook = loops[name]
                    looping[key] = (function, hook, convert)
                elif name in transits:
                    leaving[key] = (transits[name], convert)
            tables = shared["keys", state] = (looping, leaving)
        return self._sw_keys(route, loops, tables[0], tables[1], transits)

    def _sw_keys(
        self,
        route: ByKey,
        loops: Mapping[str, LoopTarget],
        looping: Mapping[Any, tuple[Any, str | None, Any]],
        leaving: Mapping[Any, tuple[Transit, Any]],
        transits: Mapping[str, Any],
    ) -> Handler:
        """``by_key``'s handler. The common cases cost the key, the converter if any, and
        one call: a key whose input loops here (its output, or the hook it forwards to),
        and a key whose input leaves the state by its compiled transition; anything else
        takes the general path."""
        key_of = route.key
        impl = self._sw_impl
        core = self._sw_core
        keyed = self._sw_keyed
        table = route.table
        # a key the table does not name goes to ``unknown``: straight to it when it loops
        # here (a Redis command, by far the most frequent request), as a looping key does
        unknown_loop = None if route.unknown is None else loops.get(route.unknown)
        otherwise = None if unknown_loop is None else (*unknown_loop, None)

        def by_key(frame: Any) -> None:
            try:
                key = key_of(frame)
                target = looping.get(key)
                if target is None:
                    if otherwise is not None and key not in table:
                        target = otherwise  # (no key the table lacks can leave)
                    else:
                        move = leaving.get(key)
            except _BAD_FRAME as exc:  # (an unhashable key, or one that cannot compare)
                self._sw_bad_frame(exc, frame)
                return
            if target is not None:
                function, hook, convert = target
                if convert is None:
                    args: tuple[Any, ...] = (frame,)
                else:
                    try:
                        args = tuple(convert(frame))
                    except _BAD_FRAME as exc:
                        self._sw_bad_frame(exc, frame)
                        return
                if function is not None:
                    result = function(impl, core, *args)
                else:
                    assert hook is not None
                    result = getattr(core, hook)(*args)
                if result is not None:
                    self._sw_wait(result)
                return
            if move is None:
                keyed(route, loops, transits, frame, key)
                return
            transit, convert = move
            if convert is None:
                transit(self, frame)
                return
            try:
                moved = tuple(convert(frame))
            except _BAD_FRAME as exc:
                self._sw_bad_frame(exc, frame)
                return
            transit(self, frame, moved)

        return by_key

    def _sw_verbs(
        self,
        route: ByKey,
        loops: Mapping[str, LoopTarget],
        fast: Mapping[Any, VerbEntry],
        moving: Mapping[Any, _Moving],
        transits: Mapping[str, Any],
    ) -> Handler:
        """``by_verb``'s handler. The common cases cost one split and one call: a verb
        whose input loops here, taking its words as they are (no converter, the right
        count, no empty word), and a verb whose input leaves the state by its compiled
        transition (its words converted, or counted); anything else takes the general
        path, :meth:`_sw_keyed`."""
        words = route.words
        impl = self._sw_impl
        core = self._sw_core
        keyed = self._sw_keyed

        def verb(frame: Any) -> None:
            if type(frame) is bytes:
                parts = frame.split(words)
                entry = fast.get(parts[0])
                if entry is not None:
                    function, hook, fewest, most = entry
                    if fewest <= len(parts) <= most and b"" not in parts:
                        del parts[0]
                        if hook is None:
                            result = function(impl, core, *parts)
                        else:
                            result = getattr(core, hook)(*parts)
                        if result is not None:
                            self._sw_wait(result)
                        return
                else:
                    move = moving.get(parts[0])
                    if move is not None and b"" not in parts:
                        transit, convert, least, most = move
                        del parts[0]
                        if convert is not None:
                            try:
                                args = tuple(convert(*parts))
                            except _BAD_FRAME as exc:
                                self._sw_bad_frame(exc, frame)
                                return
                            transit(self, frame, args)
                            return
                        if least <= len(parts) <= most:
                            transit(self, frame, tuple(parts))
                            return
            keyed(route, loops, transits, frame)

        return verb

    def _sw_frame_input(self, name: str, frame: Any) -> None:
        self._sw_dispatch(name, (frame,), frame)

    def _sw_keyed(
        self,
        route: ByKey,
        loops: Mapping[str, LoopTarget],
        transits: Mapping[str, Any],
        frame: Any,
        key: Hashable = _NO_KEY,
    ) -> None:
        try:
            if route.words is not None:  # a command: cut it once, verb and words
                key, *rest = bytes(frame).split(route.words)
            elif key is _NO_KEY:  # (else the fast path computed it)
                key = route.key(frame)
            entry = route.table.get(key)
            args: tuple[Any, ...]
            if entry is None:
                if route.unknown is None:
                    raise _NoInput(f"no input for {shown(key)}")
                name, args = route.unknown, (frame,)
            else:
                name, convert, arity = entry
                if route.words is not None:
                    words = tuple(w for w in rest if w)
                    if convert is not None:
                        args = tuple(convert(*words))
                    elif arity is None or arity[0] <= len(words) <= arity[1]:
                        args = words
                    else:
                        raise TypeError(f"{name} takes {arity[0]} to {arity[1]} words")
                else:
                    args = tuple(convert(frame)) if convert else (frame,)
        except _BAD_FRAME as exc:
            self._sw_bad_frame(exc, frame)
            return
        target = loops.get(name)
        if target is None:
            transit = transits.get(name)
            if transit is not None:
                transit(self, frame, args)
            else:
                self._sw_dispatch(name, args, frame)
            return
        function, hook = target
        if hook is not None:
            result = getattr(self._sw_core, hook)(*args)
        else:
            assert function is not None
            result = function(self._sw_impl, self._sw_core, *args)
        if result is not None:
            self._sw_wait(result)

    def _sw_bad_frame(self, exc: Exception, frame: Any) -> None:
        """A route's key or converter refused ``frame``: a remote error, state unchanged."""
        kind = UnknownKey if type(exc) is _NoInput else BadArguments
        error = kind(f"cannot route {shown(frame)}: {exc}", state=self.state, frame=frame)
        error.__cause__ = exc  # what the key or converter said (a reply a protocol words)
        self._sw_remote(error)

    def _sw_unroutable(self, frame: Any) -> None:
        self._sw_remote(
            UnroutableFrame(
                f"state {self.state!r} reads nothing, got {shown(frame)}",
                state=self.state,
                frame=frame,
            )
        )

    def _sw_dispatch(self, name: str, args: tuple[Any, ...], frame: Any) -> None:
        style = self._sw_plan.style
        impl = self._sw_impl
        state = style.state(impl)
        if not style.accepts(state, name):
            self._sw_remote(UnexpectedInput(state=style.name_of(state), input=name, frame=frame))
            return
        try:
            if self._sw_traced:
                self._sw_frame = frame
                try:
                    result = style.fire(impl, name, args)
                finally:
                    self._sw_frame = None
            else:
                result = style.fire(impl, name, args)
        except BaseException:
            # an output that raised left the machine in its new state: follow it as far
            # as possible, and report the output's error
            entered_anyway(lambda core: core._sw_sync(), self)
            raise
        self._sw_sync()
        if result is not None:
            self._sw_wait(result)
