"""Only the optional accelerators live here; all metadata is in pyproject.toml.

Two kinds, both optional: without a C compiler (or without mypyc, for the second), or with
STATEWIRE_PURE=1 set at install time, statewire installs and runs on pure Python (same
results, slower).

* C extensions written by hand: the framing decoders' cutters, the common HTTP head, the
  PROXY header.
* The framer and its decoders compiled by mypyc: a copy of each module named in
  ``statewire/framing/_compiled.py`` (``_framer.py`` as ``_framer_compiled.py``, the copies
  importing each other by those names), stamped with the digest of the package's sources,
  compiled as one group; the copies are deleted once their C is written. statewire puts
  them in place of the pure modules only while the stamp is the digest of the sources as
  they are (``statewire.framing.compiled()``), so an edited checkout runs the code as
  edited, pure, until it is installed again.
"""

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
FRAMING = HERE / "statewire" / "framing"
STAMP = "\n\n#: the digest of the sources this copy was made from\nSOURCE_DIGEST = {!r}\n"
#: commands that only read the project's metadata: no need to run mypyc for them
METADATA_ONLY = {"egg_info", "dist_info", "sdist", "check"}


def framing_compiled() -> ModuleType:
    """``statewire/framing/_compiled.py`` (its list and its digest), loaded on its own:
    it imports nothing but the standard library, and statewire is not importable here."""
    spec = importlib.util.spec_from_file_location("_statewire_compiled", FRAMING / "_compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_written() -> list[Extension]:
    return [
        Extension("statewire.framing._speedups", ["statewire/framing/_speedups.c"], optional=True),
        Extension(
            "statewire.protocols._http1_speedups",
            ["statewire/protocols/_http1_speedups.c"],
            optional=True,
        ),
        Extension("statewire._proxy_speedups", ["statewire/_proxy_speedups.c"], optional=True),
    ]


def compiled() -> list[Extension]:
    """The mypyc-compiled copies, or none (mypyc missing or failing: said, not fatal)."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("statewire: mypyc is not installed; framing stays pure Python", file=sys.stderr)
        return []
    loader = framing_compiled()
    names = loader.MODULES
    stamp = STAMP.format(loader.digest(FRAMING))
    # each copy imports the others by their copies' names
    alternatives = "|".join(map(re.escape, names))
    renamed = re.compile(rf"\bstatewire\.framing\.({alternatives})\b")
    copies = []
    try:
        for name in names:
            text = (FRAMING / f"{name}.py").read_text(encoding="utf-8")
            copy = FRAMING / f"{name}_compiled.py"
            copy.write_text(renamed.sub(r"statewire.framing.\1_compiled", text) + stamp, "utf-8")
            copies.append(copy)
        # the copies' imports are type-checked as far as mypyc needs them; third-party
        # packages missing from the build environment are Any
        extensions = mypycify(
            [
                "--ignore-missing-imports",
                "--follow-imports=silent",
                *(str(copy.relative_to(HERE)) for copy in copies),
            ],
            opt_level="3",
            group_name="statewire.framing._group",
        )
    except (Exception, SystemExit) as error:  # (mypyc exits on an error; not fatal here)
        print(f"statewire: mypyc failed ({error}); framing stays pure Python", file=sys.stderr)
        return []
    finally:
        for copy in copies:  # (the C made from it is in build/; a stale copy must not stay)
            copy.unlink(missing_ok=True)
    for extension in extensions:
        extension.optional = True
    return extensions


extensions: list[Extension] = []
if os.environ.get("STATEWIRE_PURE") != "1":
    extensions = hand_written()
    commands = {argument for argument in sys.argv[1:] if not argument.startswith("-")}
    if not commands or not commands <= METADATA_ONLY:
        extensions += compiled()

setup(ext_modules=extensions)
