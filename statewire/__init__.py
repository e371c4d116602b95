"""statewire: network protocols as state diagrams.

Layers: :mod:`grammars` (framing grammars, pure construct), :mod:`statewire.framing`
(sans-IO incremental framing), :mod:`statewire.protocol` (Twisted's ``Protocol`` and
``Factory``), and the runtime on asyncio: ``from statewire import reactor``,
:mod:`statewire.endpoints`, :mod:`statewire.wire`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statewire._reactor import Reactor

    reactor: Reactor

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> Any:
    # The reactor is made on first use, so importing the sans-IO layers starts no I/O.
    if name == "reactor":
        from statewire._reactor import Reactor
        from statewire.declarative import set_default_clock

        shared = Reactor()
        globals()["reactor"] = shared
        set_default_clock(shared)
        return shared
    raise AttributeError(f"module 'statewire' has no attribute {name!r}")
