"""The demo: frame a memcached-style byte stream, cut into small reads, and print the frames.

Commands are CRLF lines; ``set KEY SIZE`` announces a data block of SIZE bytes (plus its
CRLF), so the framer switches from ``line`` to ``fixed(SIZE + 2)`` for one frame and back.
That switch is the whole "mixed line/raw protocol" problem, done with grammars.
"""

from __future__ import annotations

import random
from typing import Any, TextIO

from grammars import fixed, line
from statewire.framing import Framer, FramingError

STREAM = (
    b"set greeting 5\r\nhello\r\n"
    b"set blob 12\r\nwith\r\nCRLF!!\r\n"
    b"get greeting\r\n"
    b"set big 4\r\n" + b"spam" + b"\r\n" + b"x" * 80 + b"\r\n"
)


def run(out: TextIO, seed: int = 2026, max_line: int = 64) -> list[Any]:
    """Frame :data:`STREAM` in random reads of 1-9 bytes; write one line per frame."""
    rng = random.Random(seed)
    chunks = []
    rest = STREAM
    while rest:
        size = rng.randint(1, 9)
        chunks.append(rest[:size])
        rest = rest[size:]
    commands = line(b"\r\n", max_length=max_line)
    frames: list[Any] = []

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        out.write(f"  {framer.grammar.describe():<22} {frame!r}\n")
        words = frame.split()
        if framer.grammar is commands and words[:1] == [b"set"]:
            framer.switch(fixed(int(words[2]) + 2))
        elif framer.grammar is not commands:
            framer.switch(commands)

    def on_error(error: FramingError) -> None:
        out.write(f"  refused: {error}\n")

    out.write(f"statewire demo: {len(STREAM)} bytes in {len(chunks)} reads of 1-9 bytes\n")
    framer = Framer(commands, on_frame, on_error=on_error)
    for chunk in chunks:
        if framer.error is not None:
            break
        framer.feed(chunk)
    out.write(f"{len(frames)} frames; {len(framer.buffered)} bytes left unframed\n")
    return frames
