"""Helpers shared by the framing tests: run a framer over chunks and record everything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from statewire.framing import Framer, FramingError, Policy


@dataclass
class Run:
    """What a framer delivered: frames, errors, and the bytes left buffered."""

    frames: list[Any] = field(default_factory=list)
    errors: list[tuple[type, int]] = field(default_factory=list)
    buffered: bytes = b""


def run(
    grammar: Any,
    chunks: list[bytes],
    *,
    fast: bool = True,
    policy: Policy = Policy.CLOSE,
    context: dict[str, Any] | None = None,
) -> Run:
    """Feed ``chunks`` until the framer stops; record frames and errors as they come."""
    result = Run()

    def on_error(error: FramingError) -> None:
        result.errors.append((type(error), error.offset))

    framer = Framer(
        grammar,
        result.frames.append,
        on_error=on_error,
        policy=policy,
        fast=fast,
        context=context,
    )
    for chunk in chunks:
        if framer.error is not None:
            break
        framer.feed(chunk)
    result.buffered = framer.buffered
    return result
