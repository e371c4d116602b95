"""Only the optional C accelerator lives here; all metadata is in pyproject.toml.

The extension is optional: without a C compiler, or with STATEWIRE_PURE=1 set at install
time, statewire installs and runs on its pure-Python decoders (same results, slower).
"""

import os

from setuptools import Extension, setup

extensions = []
if os.environ.get("STATEWIRE_PURE") != "1":
    extensions.append(
        Extension(
            "statewire.framing._speedups",
            ["statewire/framing/_speedups.c"],
            optional=True,
        )
    )
    extensions.append(
        Extension(
            "statewire.protocols._http1_speedups",
            ["statewire/protocols/_http1_speedups.c"],
            optional=True,
        )
    )
    extensions.append(
        Extension(
            "statewire._proxy_speedups",
            ["statewire/_proxy_speedups.c"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
