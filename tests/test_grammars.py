"""The framing grammars as construct objects: round trips, composition, errors."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Int8ub, Int16ub, Struct, this
from hypothesis import given
from hypothesis import strategies as st

import grammars
from grammars import (
    InvalidValueError,
    MalformedError,
    TooLongError,
    TruncatedError,
    fixed,
    line,
    netstring,
    prefixed,
    raw,
)
from statewire.testing.strategies import from_grammar

GRAMMARS = [
    line(),
    line(b"\n", max_length=8),
    line(b"\r\n\r\n", max_length=32),
    netstring(),
    netstring(max_length=10),
    prefixed(),
    prefixed(1),
    prefixed(2, "little"),
    prefixed(8, max_length=100),
    prefixed(4, includes_header=True),
    prefixed(2, length_offset=3),
    prefixed(2, length_adjustment=2),
    prefixed(2, length_adjustment=-2),
    fixed(5),
    raw(),
]


@pytest.mark.parametrize("grammar", GRAMMARS, ids=repr)
@given(data=st.data())
def test_round_trip(grammar: Any, data: st.DataObject) -> None:
    value = data.draw(from_grammar(grammar))
    assert grammar.parse(grammar.build(value)) == value


def test_grammars_import_nothing_from_statewire() -> None:
    import subprocess
    import sys

    code = "import sys, grammars; sys.exit(any(m.startswith('statewire') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert grammars.__all__


# -- composition ---------------------------------------------------------------------------


def test_line_content_parsed_further_by_a_struct() -> None:
    command = Struct("verb" / Int8ub, "size" / Int16ub)
    framed = line(b"\n")
    value = command.parse(framed.parse(b"\x01\x00\x05\n"))
    assert (value.verb, value.size) == (1, 5)


def test_framings_inside_a_struct_round_trip() -> None:
    message = Struct(
        "name" / line(b"\n"),
        "tag" / netstring(),
        "body" / prefixed(1),
        "block" / fixed(this._params.n),
        "rest" / raw(),
    )
    value = {"name": b"x", "tag": b"yy", "body": b"zzz", "block": b"12", "rest": b"tail"}
    wire = message.build(value, n=2)
    assert wire == b"x\n2:yy,\x03zzz12tail"
    parsed = message.parse(wire, n=2)
    assert {k: parsed[k] for k in value} == value


def test_fixed_size_from_context() -> None:
    assert fixed(this.size).parse(b"abcdef", size=4) == b"abcd"
    assert fixed(this.size).build(b"ab", size=2) == b"ab"


def _size_expressions() -> st.SearchStrategy[Any]:
    """construct expressions of the fields ``a``, ``b`` and small integers."""
    leaves = st.sampled_from("ab").map(lambda name: getattr(this, name)) | st.integers(0, 9)
    ops = [
        lambda x, y: x + y,
        lambda x, y: x - y,
        lambda x, y: x * y,
        lambda x, y: x // y,
        lambda x, y: x % y,
    ]

    def apply(op: Any, x: Any, y: Any) -> Any:
        try:
            return op(x, y)
        except ZeroDivisionError:  # two constants folded by Python, not an expression
            return x

    def combine(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.builds(apply, st.sampled_from(ops), children, children)

    return st.recursive(leaves, combine, max_leaves=6).filter(lambda e: not isinstance(e, int))


@given(_size_expressions(), st.integers(0, 50), st.integers(1, 50))
def test_fixed_size_compiled_equals_constructs_evaluation(expr: Any, a: int, b: int) -> None:
    from construct import Container, evaluate

    block = fixed(expr)
    assert block._size_of is not None  # every arithmetic expression is compiled
    context = {"a": a, "b": b}
    try:
        expected: Any = evaluate(expr, Container(context))
    except ZeroDivisionError:
        with pytest.raises(ZeroDivisionError):
            block.size_in(context)
        return
    if expected < 0:
        with pytest.raises(InvalidValueError):
            block.size_in(context)
    else:
        assert block.size_in(context) == expected
        assert block.size_in(Container(context)) == expected


def test_fixed_size_other_callables_are_constructs() -> None:
    assert fixed(lambda ctx: ctx.n * 2)._size_of is None
    assert fixed(lambda ctx: ctx.n * 2).size_in({"n": 3}) == 6
    with pytest.raises(KeyError):
        fixed(this.missing + 1).size_in({"n": 3})


def test_compiled_struct_falls_back_for_framings() -> None:
    message = Struct("kind" / Int8ub, "text" / line()).compile()
    assert message.parse(b"\x07hi\r\n").text == b"hi"


# -- lines ---------------------------------------------------------------------------------


def test_line_accepts_exactly_max_length() -> None:
    assert line(b"\n", max_length=3).parse(b"abc\n") == b"abc"


def test_line_refuses_one_past_max_length_with_offset() -> None:
    with pytest.raises(TooLongError) as caught:
        line(b"\n", max_length=3).parse(b"abcd\n")
    assert caught.value.offset == 3
    assert caught.value.limit == 3
    assert "longer than 3 bytes" in str(caught.value)


def test_line_truncated_is_a_stream_error() -> None:
    with pytest.raises(TruncatedError) as caught:
        line().parse(b"abc\r")
    assert caught.value.offset == 4


def test_line_build_refuses_delimiter_inside_value() -> None:
    with pytest.raises(InvalidValueError, match="contains its delimiter"):
        line().build(b"a\r\nb")
    # a value whose end and the delimiter would form an earlier delimiter
    with pytest.raises(InvalidValueError):
        line(b"aa").build(b"a")


def test_line_build_refuses_oversize_and_str() -> None:
    with pytest.raises(TooLongError, match="exceeds max_length 2"):
        line(max_length=2).build(b"abc")
    with pytest.raises(InvalidValueError, match="encode it first"):
        line().build("text")


def test_line_exceeds_knows_a_partial_delimiter_at_the_limit() -> None:
    grammar = line(b"\r\n", max_length=3)
    assert not grammar.exceeds(b"abc\r")  # "\n" may still end a 3-byte line
    assert grammar.exceeds(b"abcd")
    assert grammar.exceeds(b"abc\rx")


def test_line_constructor_checks() -> None:
    with pytest.raises(ValueError):
        line(b"")
    with pytest.raises(ValueError):
        line(b"\n", max_length=-1)


# -- netstrings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "error", "offset", "message"),
    [
        (b"01:x,", MalformedError, 0, "leading zero"),
        (b"a:", MalformedError, 0, "not a digit"),
        (b"1a:", MalformedError, 1, "not a digit"),
        (b"+1:x,", MalformedError, 0, "not a digit"),
        (b" 1:x,", MalformedError, 0, "not a digit"),
        (b":", MalformedError, 0, "empty"),
        (b"3:abc;", MalformedError, 5, "expected b','"),
        (b"11:", TooLongError, 0, "more than max_length 10"),
        (b"123", TooLongError, 0, "at least 123"),
    ],
)
def test_netstring_errors(wire: bytes, error: type, offset: int, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        netstring(max_length=10).parse(wire)
    assert caught.value.offset == offset


@pytest.mark.parametrize("wire", [b"", b"3", b"3:", b"3:ab", b"3:abc"])
def test_netstring_truncated(wire: bytes) -> None:
    with pytest.raises(TruncatedError):
        netstring().parse(wire)


def test_netstring_spec_examples() -> None:
    assert netstring().build(b"hello world!") == b"12:hello world!,"
    assert netstring().build(b"") == b"0:,"
    assert netstring(max_length=10).parse(b"10:0123456789,") == b"0123456789"


def test_netstring_build_refuses_oversize() -> None:
    with pytest.raises(TooLongError):
        netstring(max_length=2).build(b"abc")


# -- length prefixes -----------------------------------------------------------------------
# The layouts below are the ones Netty documents for LengthFieldBasedFrameDecoder.


def test_prefixed_plain_two_byte_length() -> None:
    grammar = prefixed(2)
    assert grammar.build(b"HELLO, WORLD") == b"\x00\x0cHELLO, WORLD"
    assert grammar.parse(b"\x00\x0cHELLO, WORLD") == b"HELLO, WORLD"


def test_prefixed_length_counts_the_whole_frame() -> None:
    grammar = prefixed(2, includes_header=True)
    assert grammar.build(b"HELLO, WORLD") == b"\x00\x0eHELLO, WORLD"
    assert grammar.parse(b"\x00\x0eHELLO, WORLD") == b"HELLO, WORLD"


def test_prefixed_header_before_the_length_is_kept() -> None:
    grammar = prefixed(2, length_offset=2)
    wire = b"\xca\xfe\x00\x0cHELLO, WORLD"
    assert grammar.parse(wire) == b"\xca\xfeHELLO, WORLD"
    assert grammar.build(b"\xca\xfeHELLO, WORLD") == wire


def test_prefixed_length_adjustment_for_a_trailer() -> None:
    grammar = prefixed(2, length_adjustment=2)  # a 2-byte trailer the length omits
    assert grammar.parse(b"\x00\x02hiCK") == b"hiCK"
    assert grammar.build(b"hiCK") == b"\x00\x02hiCK"


def test_prefixed_little_endian_and_widths() -> None:
    assert prefixed(2, "little").build(b"ab") == b"\x02\x00ab"
    assert prefixed(8).build(b"a") == b"\x00" * 7 + b"\x01a"
    with pytest.raises(ValueError):
        prefixed(3)
    with pytest.raises(ValueError):
        prefixed(2, "middle")  # type: ignore[arg-type]


def test_prefixed_refuses_oversize_from_the_header() -> None:
    with pytest.raises(TooLongError) as caught:
        prefixed(4, max_length=10).parse(b"\x00\x00\x00\x0b")  # no body needed to know
    assert caught.value.offset == 0
    assert "11 bytes" in str(caught.value)


def test_prefixed_negative_length_is_malformed() -> None:
    with pytest.raises(MalformedError, match="negative"):
        prefixed(1, includes_header=True).parse(b"\x00")


def test_prefixed_build_errors() -> None:
    with pytest.raises(TooLongError):
        prefixed(1).build(b"x" * 256)
    with pytest.raises(TooLongError):
        prefixed(max_length=3).build(b"abcd")
    with pytest.raises(InvalidValueError, match="header"):
        prefixed(2, length_offset=2).build(b"a")
    with pytest.raises(InvalidValueError, match="too short"):
        prefixed(2, length_adjustment=2).build(b"a")


def test_prefixed_truncated() -> None:
    with pytest.raises(TruncatedError):
        prefixed().parse(b"\x00\x00")
    with pytest.raises(TruncatedError):
        prefixed().parse(b"\x00\x00\x00\x03ab")


# -- fixed and raw -------------------------------------------------------------------------


def test_fixed_errors() -> None:
    with pytest.raises(TruncatedError):
        fixed(3).parse(b"ab")
    with pytest.raises(TooLongError):
        fixed(3).build(b"abcd")
    with pytest.raises(InvalidValueError):
        fixed(3).build(b"ab")
    with pytest.raises(ValueError):
        fixed(-1)


def test_raw_takes_everything() -> None:
    assert raw().parse(b"any\r\nbytes") == b"any\r\nbytes"
    assert raw().build(b"x") == b"x"


def test_descriptions() -> None:
    assert line().describe() == "line CRLF ≤ 16 KiB"
    assert netstring().describe() == "netstring ≤ 1 MiB"
    assert netstring(99999).describe() == "netstring ≤ 99999 B"
    assert prefixed(2, "little").describe() == "prefixed u16le ≤ 1 MiB"
    assert fixed(this.size).describe() == "fixed(size)"
    assert raw().describe() == "raw"
