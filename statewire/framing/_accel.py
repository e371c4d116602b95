"""The optional C accelerator, or ``None`` for each function when it is unavailable.

Set ``STATEWIRE_PURE=1`` in the environment to run the pure-Python decoders even when the
extension is built. The decoders read these names when they are created, so tests can
swap them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: Limits above this are clamped before reaching C (its arithmetic is 64-bit).
C_LIMIT = 1 << 48

Cut = tuple[list[bytes], int]
cut_prefixed: Callable[[bytes, int, int, int, bool, int, int, int], Cut] | None
cut_netstring: Callable[[bytes, int, int, int], Cut] | None
cut_lines: Callable[[bytes, int, bytes, int, int], Cut] | None
#: (src, pos, max_bulk, max_array, max_inline, max_frames, frames, ends) -> pos
cut_resp: Callable[[bytes, int, int, int, int, int, list[Any], list[int]], int] | None
#: (src, pos, max_bulk, max_array, max_inline) -> (command, end) | None
one_resp: Callable[[bytes, int, int, int, int], tuple[list[bytes], int] | None] | None

try:
    if os.environ.get("STATEWIRE_PURE") == "1":
        raise ImportError("STATEWIRE_PURE=1")
    from statewire.framing._speedups import (
        cut_lines,
        cut_netstring,
        cut_prefixed,
        cut_resp,
        one_resp,
    )
except ImportError:
    cut_prefixed = None
    cut_netstring = None
    cut_lines = None
    cut_resp = None
    one_resp = None


def available() -> bool:
    """Whether the C accelerator is in use."""
    return cut_prefixed is not None
