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

The framer is compiled by mypyc when statewire is installed with it (see :func:`compiled`).
"""

from typing import TYPE_CHECKING

from statewire.framing import _compiled
from statewire.framing.errors import FrameTooLong, FramingError, MalformedFrame, TruncatedFrame

if TYPE_CHECKING:
    from statewire.framing._framer import (
        DEFAULT_MAX_LENGTH,
        Framer,
        Policy,
        decode,
        encode,
        encode_frame,
    )
else:
    _module = _compiled.load()
    if _module is None:
        from statewire.framing import _framer as _module

    DEFAULT_MAX_LENGTH = _module.DEFAULT_MAX_LENGTH
    Framer = _module.Framer
    Policy = _module.Policy
    decode = _module.decode
    encode = _module.encode
    encode_frame = _module.encode_frame


def compiled() -> bool:
    """Whether the framer in use is the one mypyc compiled (``_compiled.reason``: why not)."""
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
