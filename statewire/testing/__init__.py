"""Testing helpers for statewire protocols and grammars (needs Hypothesis: the ``testing``
extra). :mod:`statewire.testing.strategies` derives Hypothesis strategies from grammars;
:mod:`statewire.testing.properties` checks grammars in one line (``assert_round_trip``,
``assert_chunking_invariant``).

The names below are imported on first use, so that importing a submodule that needs no
Hypothesis (the pytest plugin, :mod:`statewire.testing.memory`) does not import it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "UnsupportedGrammar": "statewire.testing.strategies",
    "chunked": "statewire.testing.strategies",
    "chunkings": "statewire.testing.strategies",
    "encoded": "statewire.testing.strategies",
    "from_grammar": "statewire.testing.strategies",
    "assert_chunking_invariant": "statewire.testing.properties",
    "assert_round_trip": "statewire.testing.properties",
    "check_conversation": "statewire.testing.conversation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
