"""Sans-IO incremental framing: bytes in, in chunks of any size; frames out.

>>> from grammars import line
>>> frames = []
>>> framer = Framer(line(b"\\n"), frames.append)
>>> framer.feed(b"one\\ntw")
>>> framer.feed(b"o\\nthree")
>>> frames
[b'one', b'two']
>>> framer.buffered
b'three'

The framer and its decoders are compiled by mypyc when statewire is installed with it
(see :func:`compiled`).
"""

from statewire.framing import _compiled

_compiled.install()  # (before anything imports the modules it may replace)

from statewire.framing._framer import (  # noqa: E402
    DEFAULT_MAX_LENGTH,
    Framer,
    Policy,
    decode,
    encode,
    encode_frame,
)
from statewire.framing.errors import (  # noqa: E402
    FrameTooLong,
    FramingError,
    MalformedFrame,
    TruncatedFrame,
)


def compiled() -> bool:
    """Whether the framer and decoders in use are the ones mypyc compiled
    (``statewire.framing._compiled.reason`` says why not)."""
    return _compiled.reason is None


__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FrameTooLong",
    "Framer",
    "FramingError",
    "MalformedFrame",
    "Policy",
    "TruncatedFrame",
    "compiled",
    "decode",
    "encode",
    "encode_frame",
]
