"""The framing modules compiled by mypyc, put in place of the pure ones when they were
built from the sources beside them.

``setup.py`` compiles a copy of each module named in :data:`MODULES` (``_framer`` as
``_framer_compiled``, ..., importing each other by those names: one group, whose calls
between modules are native), each stamped with :func:`digest` of the package's sources
then. :func:`install`, run by ``statewire.framing`` before it imports any of them, puts
the compiled copies in their place (``sys.modules``), all or none: only while the stamp is
the digest of the sources as they are now (any ``statewire/framing/*.py`` changed, even
one not compiled: the compiled code counts on the types the others declare). An edited
checkout (an editable install not built again) thus runs the modules as edited, in pure
Python, rather than compiled code of older ones. ``STATEWIRE_PURE=1`` in the environment
turns it off, as it turns off the C decoders.

The compiled modules are the same code, so they behave alike (``tests/test_compiled.py``
compares them); where a value's type does not match an annotation, the compiled code
raises ``TypeError`` at once. Compiled functions have no Python frame of their own: code
that looks at its caller's frame must not count on a fixed depth (``_generic`` does not).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

#: the modules of ``statewire.framing`` compiled (``setup.py`` reads this literal)
MODULES = (
    "_decoder",
    "_framer",
    "_generic",
    "_line",
    "_netstring",
    "_prefixed",
    "_replies",
    "_resp",
    "_streamed",
    "_websocket",
)
PACKAGE = "statewire.framing"

#: why the compiled modules are not in use (``None``: they are)
reason: str | None = "not installed yet"


def digest(folder: Path) -> str | None:
    """The SHA-256 of the package's sources in ``folder`` (``*.py`` but the compiled
    copies), names and contents; ``None`` without them (installed without its sources:
    nothing to be stale against)."""
    copies = {f"{name}_compiled.py" for name in MODULES}
    sources = sorted(path for path in folder.glob("*.py") if path.name not in copies)
    if not sources:
        return None
    summed = hashlib.sha256()
    for path in sources:
        summed.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return summed.hexdigest()


def install() -> bool:
    """Put the compiled modules in place of the pure ones, if they were built from the
    sources beside them; whether it did (else :data:`reason` says why)."""
    global reason
    if os.environ.get("STATEWIRE_PURE") == "1":
        reason = "STATEWIRE_PURE=1"
        return False
    present = [sys.modules.get(f"{PACKAGE}.{name}") for name in MODULES]
    if all(getattr(module, "__name__", "").endswith("_compiled") for module in present):
        reason = None  # put in place already (the package reloaded)
        return True
    imported = [name for name, module in zip(MODULES, present) if module is not None]
    if imported:  # (pure modules in use already: not mixed with compiled ones)
        reason = f"imported before the compiled modules could be put in place: {imported}"
        return False
    compiled = {}
    try:
        for name in MODULES:
            compiled[name] = importlib.import_module(f"{PACKAGE}.{name}_compiled")
    except ImportError as error:
        reason = (
            "not built: mypyc was missing or failed when statewire was installed, or the "
            f"build is incomplete ({error})"
        )
        return False
    except Exception as error:  # a compiled copy of other sources that fails to import
        reason = f"the compiled modules fail to import ({type(error).__name__}: {error})"
        return False
    current = digest(Path(__file__).resolve().parent)
    stamps = {getattr(module, "SOURCE_DIGEST", None) for module in compiled.values()}
    if current is not None and stamps != {current}:
        reason = "built from other sources of statewire.framing (install statewire again)"
        return False
    package = sys.modules[PACKAGE]
    for name, module in compiled.items():
        sys.modules[f"{PACKAGE}.{name}"] = module
        setattr(package, name, module)
        _named_as_pure(module, f"{PACKAGE}.{name}")
    reason = None
    return True


def _named_as_pure(module: ModuleType, name: str) -> None:
    """Give the classes of ``module`` that mypyc left Python classes (``Policy``, an enum)
    the pure module's name: what is pickled names the module that has them either way
    (mypyc's own classes keep theirs: they refuse the change, and do not pickle)."""
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            try:
                value.__module__ = name
            except (TypeError, AttributeError):
                pass
