"""The framer compiled by mypyc, when it was built from the source beside it.

``setup.py`` compiles a copy of :mod:`statewire.framing._framer`, stamped with the SHA-256
of the source it was made from, as ``statewire.framing._framer_compiled``. It is used only
while that digest matches ``_framer.py`` as it is now: an edited checkout (an editable
install not built again) runs the framer as edited, in pure Python, rather than a compiled
framer of older code. ``STATEWIRE_PURE=1`` in the environment turns it off, as it turns
off the C decoders.

Both framers are the same code, so they behave alike (``tests/test_framer_compiled.py``
compares them); the compiled one refuses, with ``TypeError``, arguments of a type its
annotations do not allow, where the pure one may fail later or not at all.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

#: why the compiled framer is not in use (``None``: it is)
reason: str | None = None


def load() -> ModuleType | None:
    """The compiled framer's module, or ``None`` (and :data:`reason` says why)."""
    global reason
    if os.environ.get("STATEWIRE_PURE") == "1":
        reason = "STATEWIRE_PURE=1"
        return None
    try:
        module = importlib.import_module("statewire.framing._framer_compiled")
    except ImportError:
        reason = "not built (mypyc was not available when statewire was installed)"
        return None
    source = Path(__file__).with_name("_framer.py")
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:  # installed without its sources: nothing to be stale against
        return module
    if getattr(module, "SOURCE_DIGEST", None) != digest:
        reason = "built from another version of _framer.py (install statewire again)"
        return None
    return module
