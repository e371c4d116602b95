"""State data made from the input's arguments, without restating them.

``builder.state("storing", lambda machine, core, key, size: Announced(key, size))``
restates every argument of the input that enters the state. ``arguments(Announced)`` says
the same: the state's data is the class called with the input's arguments, in order. When
the protocol is declared, the class's parameters are checked against the input's (same
names, same order), so a renamed or reordered field is a definition error, not wrong data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from statewire.machine.errors import DefinitionError

T = TypeVar("T")

#: the attribute naming, on a factory :func:`arguments` made, the class it calls
MADE_OF = "statewire_arguments"


def arguments(cls: Callable[..., T]) -> Callable[..., T]:
    """A state-data factory: the data is ``cls(*arguments)`` of the input entering the
    state (a dataclass whose fields are the input's parameters, in order)."""

    def factory(machine: Any, core: Any, /, *args: Any, **kwargs: Any) -> T:
        return cls(*args, **kwargs)

    name = getattr(cls, "__name__", repr(cls))
    factory.__name__ = factory.__qualname__ = f"arguments({name})"
    setattr(factory, MADE_OF, cls)
    return factory


def check_arguments(
    factory: Any, input: str, parameters: tuple[inspect.Parameter, ...] | None, state: str
) -> None:
    """Refuse a state whose data :func:`arguments` makes from an input whose parameters
    the class does not take, by name and in order."""
    cls = getattr(factory, MADE_OF, None)
    if cls is None or parameters is None:
        return
    wanted = [p.name for p in parameters if p.kind is not p.VAR_POSITIONAL]
    try:
        taken = list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return
    if taken[: len(wanted)] != wanted:
        raise DefinitionError(
            f"state {state!r}: its data is {factory.__name__}, made from the arguments of "
            f"input {input!r} ({', '.join(wanted) or 'none'}), but "
            f"{getattr(cls, '__name__', cls)} takes ({', '.join(taken) or 'nothing'}): "
            "name the fields as the input names its parameters, in the same order"
        )
