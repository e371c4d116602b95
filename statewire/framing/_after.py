"""The list :meth:`Framer.after_queue <statewire.framing._framer.Framer.after_queue>` gives.

A module of its own: mypyc compiles the framer, and cannot compile a subclass of a
built-in type (this one stays pure Python either way).
"""

from __future__ import annotations

from collections.abc import Callable


class AfterQueue(list[Callable[[], object]]):
    """A list whose ``append`` also asks the framer for ``drain()`` after the frame being
    delivered (``after_frame``, which does nothing outside a frame's callback)."""

    __slots__ = ("after_frame", "drain")

    def __init__(
        self, after_frame: Callable[[Callable[[], None]], bool], drain: Callable[[], None]
    ) -> None:
        super().__init__()
        self.after_frame = after_frame
        self.drain = drain

    def append(self, item: Callable[[], object]) -> None:
        list.append(self, item)  # (not super(): twice the cost)
        self.after_frame(self.drain)
