"""The two automat styles behind one interface: which one a protocol's machine gets.

The interface is :class:`~statewire.machine._style.Style`; its implementations, and every
use of automat's private API, are in :mod:`statewire.machine._automat`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statewire.machine._automat import style_for
from statewire.machine._style import FORWARD_MARK, Handler, LoopTarget, Style, Transit

__all__ = ["Handler", "LoopTarget", "Style", "Transit", "forward", "style_for"]


def forward(hook: str) -> Callable[..., Any]:
    """A transition body that calls the protocol's method ``hook`` with the input's
    arguments: ``state.upon(Inputs.line).loop()(forward("lineReceived"))``.

    Declaring it this way (rather than writing the same function by hand) lets the
    compiled dispatch hand frames straight to ``core.<hook>``: the cheapest possible path.
    The method is looked up when the connection enters the state. What it returns is
    returned (an awaitable makes the connection wait for it).
    """

    def transition(machine: object, core: object, *args: Any) -> Any:
        return getattr(core, hook)(*args)

    transition.__name__ = hook
    setattr(transition, FORWARD_MARK, hook)
    return transition
