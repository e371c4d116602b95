"""Framing grammars as construct objects: lines, netstrings, length prefixes, blocks, raw.

Pure construct: this package imports nothing from statewire and is usable on its own. Every
grammar parses and builds (``g.parse(g.build(v)) == v``), composes with construct's types,
refuses oversize values when building and says what was wrong, and where, when parsing.
"""

from grammars._base import Framing
from grammars.errors import (
    GrammarError,
    InvalidValueError,
    MalformedError,
    TooLongError,
    TruncatedError,
)
from grammars.fixed import Fixed, Raw, fixed, raw
from grammars.limited import Limited, limited
from grammars.line import Line, line
from grammars.netstring import Netstring, netstring
from grammars.prefixed import LengthPrefixed, prefixed
from grammars.resp import Request, Resp, request, resp
from grammars.streamed import Piece, Streamed, streamed

__all__ = [
    "Fixed",
    "Framing",
    "GrammarError",
    "InvalidValueError",
    "LengthPrefixed",
    "Limited",
    "Line",
    "MalformedError",
    "Netstring",
    "Piece",
    "Raw",
    "Request",
    "Resp",
    "Streamed",
    "TooLongError",
    "TruncatedError",
    "fixed",
    "limited",
    "line",
    "netstring",
    "prefixed",
    "raw",
    "request",
    "resp",
    "streamed",
]
