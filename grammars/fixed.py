"""Fixed-size blocks and raw bytes."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import FunctionType
from typing import IO, Any

from construct import Container, evaluate, stream_write

from grammars._base import Framing, as_bytes
from grammars.errors import InvalidValueError, TooLongError, TruncatedError

Size = int | Callable[[Any], int]


class Fixed(Framing):
    """Exactly ``size`` bytes.

    ``size`` is an int or, as everywhere in construct, a function of the context (for
    example ``this.size``), so a length announced earlier can size the block.
    """

    def __init__(self, size: Size) -> None:
        super().__init__()
        if isinstance(size, int) and size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self._size_of = _compiled(size)

    def describe(self) -> str:
        size = self.size
        if isinstance(size, int):
            return f"fixed({size})"
        name = size.__name__ if isinstance(size, FunctionType) else _expression(size)
        return f"fixed({name})"

    def size_in(self, context: Any) -> int:
        """The block size in ``context`` (a construct ``Container`` or a mapping).

        An arithmetic expression of context fields and integers (``this.size + 2``) is
        evaluated by a function compiled from it once (construct's own evaluation walks the
        expression's objects at every call); anything else by construct."""
        compiled = self._size_of
        if compiled is not None:
            size = compiled(context)
        else:
            if type(context) is not Container:
                context = Container(context)
            size = evaluate(self.size, context)
        if not isinstance(size, int) or size < 0:
            raise InvalidValueError(f"fixed size must be an int >= 0, got {size!r}")
        return size

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        size = self.size_in(context)
        start = stream.tell()
        data = stream.read(size)
        if len(data) < size:
            raise TruncatedError(
                f"stream ended inside a block of {size} bytes",
                needed=start + size,
                offset=start + len(data),
                path=path,
            )
        return data

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        data = as_bytes(obj, path)
        size = self.size_in(context)
        if len(data) > size:
            raise TooLongError(
                f"block of {len(data)} bytes exceeds its size {size}", limit=size, path=path
            )
        if len(data) < size:
            raise InvalidValueError(f"block of {len(data)} bytes, expected {size}", path=path)
        stream_write(stream, data, size, path)
        return obj


#: what construct writes for an expression of context fields, integers and ``+ - * // %``
_ARITHMETIC = re.compile(r"(?:this(?:\['[A-Za-z_][A-Za-z0-9_]*'\])+|[0-9]+|//|[-+*%() ])+")


def _compiled(size: Size) -> Callable[[Any], int] | None:
    """``size`` as a Python function of the context, when it is a construct expression of
    context fields, integers and ``+ - * // %`` (construct writes ``this.size + 2`` as
    ``(this['size'] + 2)``, which is Python reading the context as a mapping); else None.
    ``tests/test_grammars.py`` checks the compiled function against construct."""
    if isinstance(size, (int, FunctionType)):
        return None
    text = str(size)
    if not _ARITHMETIC.fullmatch(text) or "this" not in text:
        return None
    # the text was checked above: context fields, integers, + - * // % and parentheses
    function: Callable[[Any], int] = eval(f"lambda this: {text}", {"__builtins__": {}})
    return function


def _expression(expression: object) -> str:
    """A construct context expression as a reader writes it: ``this.size + 2`` reads
    ``size + 2`` (construct prints ``(this['size'] + 2)``)."""
    text = re.sub(r"this\['([^']*)'\]", r"\1", str(expression))
    if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


class Raw(Framing):
    """Whatever bytes are available: the rest of the stream when parsing."""

    def describe(self) -> str:
        return "raw"

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> bytes:
        return stream.read()

    def _build(self, obj: object, stream: IO[bytes], context: Any, path: str) -> object:
        data = as_bytes(obj, path)
        stream_write(stream, data, len(data), path)
        return obj


def fixed(size: Size) -> Fixed:
    """Exactly ``size`` bytes; ``size`` may come from the context.

    >>> from construct import this
    >>> fixed(3).parse(b"abc")
    b'abc'
    >>> fixed(this.n).parse(b"abcdef", n=2)
    b'ab'
    """
    return Fixed(size)


def raw() -> Raw:
    """Whatever bytes are available (the framer delivers each read as one frame).

    >>> raw().parse(b"anything")
    b'anything'
    """
    return Raw()
