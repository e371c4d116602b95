"""Only the optional accelerators live here; all metadata is in pyproject.toml.

Two kinds, both optional: without a C compiler (or without mypyc, for the second), or with
STATEWIRE_PURE=1 set at install time, statewire installs and runs on pure Python (same
results, slower).

* C extensions written by hand: the framing decoders' cutters, the common HTTP head, the
  PROXY header.
* The framer compiled by mypyc: a copy of ``statewire/framing/_framer.py`` stamped with the
  source's digest, built as ``statewire.framing._framer_compiled``. statewire uses it only
  while the digest matches the source beside it (``statewire.framing.compiled()``), so
  an edited checkout runs the code as edited, pure, until it is installed again.
"""

import hashlib
import os
import sys
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
#: the module mypyc compiles, and the name of its compiled copy
COMPILED = [("statewire/framing/_framer.py", "statewire/framing/_framer_compiled.py")]
STAMP = "\n\n#: the digest of the source this copy was made from\nSOURCE_DIGEST = {!r}\n"


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
        print("statewire: mypyc is not installed; the framer stays pure Python", file=sys.stderr)
        return []
    copies = []
    try:
        for source, copy in COMPILED:
            data = (HERE / source).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            (HERE / copy).write_bytes(data + STAMP.format(digest).encode())
            copies.append(copy)
        # the copy's imports are type-checked as far as mypyc needs them; third-party
        # packages missing from the build environment are Any
        extensions = mypycify(
            ["--ignore-missing-imports", "--follow-imports=silent", *copies], opt_level="3"
        )
    except (Exception, SystemExit) as error:  # (mypyc exits on an error; not fatal here)
        print(f"statewire: mypyc failed ({error}); the framer stays pure Python", file=sys.stderr)
        return []
    finally:
        for copy in copies:  # (the C made from it is in build/; a stale copy must not stay)
            (HERE / copy).unlink(missing_ok=True)
    for extension in extensions:
        extension.optional = True
    return extensions


extensions: list[Extension] = []
if os.environ.get("STATEWIRE_PURE") != "1":
    extensions = hand_written() + compiled()

setup(ext_modules=extensions)
