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
"""

from statewire.framing._framer import (
    DEFAULT_MAX_LENGTH,
    Framer,
    Policy,
    decode,
    encode,
    encode_frame,
)
from statewire.framing.errors import FrameTooLong, FramingError, MalformedFrame, TruncatedFrame

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FrameTooLong",
    "Framer",
    "FramingError",
    "MalformedFrame",
    "Policy",
    "TruncatedFrame",
    "decode",
    "encode",
    "encode_frame",
]
