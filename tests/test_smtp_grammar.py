"""grammars.smtp: command lines and their arguments, replies (multi-line), the dot-stuffed
body and BDAT's argument; round trips and chunking invariance by Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grammars import MalformedError, TooLongError
from grammars.smtp import (
    ArgumentError,
    Reply,
    bare_newline,
    command_line,
    dot_body,
    parse_bdat,
    parse_command,
    parse_path,
    replies,
    reply,
    stuff,
    text_line,
    unstuff,
)
from statewire.framing import FrameTooLong, decode
from statewire.testing.strategies import chunkings

# -- command lines ---------------------------------------------------------------------------


def test_command_lines_are_at_most_512_octets_with_their_crlf() -> None:
    longest = b"X" * 510
    assert decode(command_line(), [longest + b"\r\n"]) == [longest]
    with pytest.raises(FrameTooLong):
        decode(command_line(), [longest + b"X\r\n"])


def test_only_crlf_ends_a_command_line() -> None:
    assert decode(command_line(), [b"NOOP\nQUIT\rX\r\n"]) == [b"NOOP\nQUIT\rX"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"ehlo client.example", (b"EHLO", b"client.example")),
        (b"DATA", (b"DATA", b"")),
        (b"MAIL FROM:<a@b> SIZE=1", (b"MAIL", b"FROM:<a@b> SIZE=1")),
        (b"", (b"", b"")),
        (b"1234 x", (b"", b"1234 x")),
    ],
)
def test_commands_split_into_verb_and_argument(
    frame: bytes, expected: tuple[bytes, bytes]
) -> None:
    assert parse_command(frame) == expected


@pytest.mark.parametrize(
    ("argument", "keyword", "expected"),
    [
        (b"FROM:<a@example.org>", b"FROM", (b"a@example.org", {})),
        (b"from: <a@example.org>", b"FROM", (b"a@example.org", {})),
        (b"FROM:<>", b"FROM", (b"", {})),
        (
            b"FROM:<a@b> SIZE=100 BODY=8BITMIME SMTPUTF8",
            b"FROM",
            (b"a@b", {b"SIZE": b"100", b"BODY": b"8BITMIME", b"SMTPUTF8": None}),
        ),
        (b"TO:<@relay.example:c@d>", b"TO", (b"c@d", {})),
        (b"TO:<p\xc3\xa9@b>", b"TO", (b"p\xc3\xa9@b", {})),
        # quoted local parts (RFC 5321 4.1.2): a space, a ">" and an escaped quote inside
        (b'TO:<"a b"@c>', b"TO", (b'"a b"@c', {})),
        (b'FROM:<"a>b"@c> SIZE=1', b"FROM", (b'"a>b"@c', {b"SIZE": b"1"})),
        (b'TO:<@relay:"x\\"y"@c>', b"TO", (b'"x\\"y"@c', {})),
        # RFC 5321 4.1.2: a route of several domains; address literals; odd atext and dots
        (b"TO:<@a.example,@b.example:c@d>", b"TO", (b"c@d", {})),
        (b"TO:<a@[192.0.2.1]>", b"TO", (b"a@[192.0.2.1]", {})),
        (b"TO:<a@[IPv6:2001:db8::1]>", b"TO", (b"a@[IPv6:2001:db8::1]", {})),
        (b"FROM:<a.b+tag!x%y@sub-1.example.org>", b"FROM", (b"a.b+tag!x%y@sub-1.example.org", {})),
        (b"FROM:<a..b.@docomo.ne.jp>", b"FROM", (b"a..b.@docomo.ne.jp", {})),
        (b"TO:<Postmaster>", b"TO", (b"Postmaster", {})),
    ],
)
def test_paths_and_parameters_parse(
    argument: bytes, keyword: bytes, expected: tuple[bytes, dict[bytes, bytes | None]]
) -> None:
    assert parse_path(argument, keyword) == expected


@pytest.mark.parametrize(
    "argument",
    [
        b"FROM:a@b",
        b"TO:<a@b>",
        b"FROM:<a@b",
        b"FROM:<a b@c>",
        b"FROM:<a@b>junk",
        b"FROM:<a@b> =1",
        b"FROM:<a@b> SIZE=",
        b"FROM:<" + b"a" * 300 + b">",
        b"FROM:<a\n@b>",
        # a source route with no mailbox is no null path (RFC 5321 4.1.2)
        b"FROM:<@x>",
        b"FROM:<@x:>",
        b"FROM:<@a,@b:>",
        b'FROM:<"a\nb"@c>',
        b'FROM:<"open@c>',
        b'FROM:<"a"@>',
        # no RFC 5321 mailbox: what a relay after the handler could route elsewhere
        b"FROM:<victim@evil.example@example.org>",
        b"FROM:<x@evil.example,y@example.org>",
        b"FROM:<@relay.example:@evil.example:v@example.org>",
        b"FROM:<a@>",
        b"FROM:<a>",
        b"FROM:<Postmaster>",  # (a recipient only: RFC 5321 4.1.1.3)
        b"FROM:<a(c)@b>",
        b"FROM:<a\\@b@c>",
        b"FROM:<a@-b.example>",
        b"FROM:<a@b-.example>",
        b"FROM:<a@b..example>",
        b"FROM:<a@b.example.>",
        b"FROM:<a@[192.0.2.1>",
        b"FROM:<a@b_c.example>",
        b"FROM:<a;b@c>",
        b"FROM:<@a.example;@b.example:c@d>",
    ],
)
def test_bad_paths_are_argument_errors(argument: bytes) -> None:
    with pytest.raises(ArgumentError):
        parse_path(argument, b"FROM")
    # the same for a recipient, by the fast path's match and the long way alike
    if argument.startswith(b"FROM:") and argument != b"FROM:<Postmaster>":
        with pytest.raises(ArgumentError):
            parse_path(b"TO:" + argument[5:], b"TO")


def test_bdat_arguments() -> None:
    assert parse_bdat(b"0") == (0, False)
    assert parse_bdat(b"100 last") == (100, True)
    for bad in (b"", b"x", b"-1", b"1 2", b"1 LAST x", b"9" * 19):
        with pytest.raises(ArgumentError):
            parse_bdat(bad)


# -- replies ---------------------------------------------------------------------------------


def test_multi_line_replies_parse_and_build() -> None:
    wire = b"250-mx.example greets c\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
    value = Reply(250, (b"mx.example greets c", b"PIPELINING", b"CHUNKING"))
    assert replies().parse(wire) == value
    assert replies().build(value) == wire
    assert bytes(reply(354, "End data")) == b"354 End data\r\n"


def test_replies_frame_one_by_one_however_cut() -> None:
    wire = b"220 hi\r\n250-a\r\n250 b\r\n221 2.0.0 Bye\r\n"
    expected = [reply(220, "hi"), reply(250, "a", "b"), reply(221, "2.0.0 Bye")]
    for cut in range(1, len(wire)):
        assert decode(replies(), [wire[:cut], wire[cut:]]) == expected


@pytest.mark.parametrize(
    "wire", [b"25 x\r\n", b"250-a\r\n251 b\r\n", b"250_x\r\n", b"600 x\r\n", b"250 a\nb\r\n"]
)
def test_malformed_replies_are_refused(wire: bytes) -> None:
    with pytest.raises(MalformedError):
        replies().parse(wire)


def test_a_reply_line_holding_a_newline_is_not_built() -> None:
    with pytest.raises(Exception, match="CR or LF"):
        replies().build(Reply(250, (b"a\r\n250 injected",)))


_TEXT = st.binary(max_size=40).filter(lambda t: b"\r" not in t and b"\n" not in t)


@given(
    st.integers(200, 559).filter(lambda c: c // 10 % 10 <= 5),
    st.lists(_TEXT, min_size=1, max_size=4),
)
def test_replies_round_trip(code: int, lines: list[bytes]) -> None:
    value = Reply(code, tuple(lines))
    assert replies().parse(replies().build(value)) == value


# -- the body --------------------------------------------------------------------------------


def test_dots_are_stuffed_and_unstuffed() -> None:
    assert stuff(b".a\r\nb\r\n.\r\n") == b"..a\r\nb\r\n..\r\n.\r\n"
    assert stuff(b"") == b".\r\n"
    assert unstuff(b"..a") == b".a"
    assert unstuff(b"a.") == b"a."


@pytest.mark.parametrize(
    "wire",
    [
        b"a\n.\nb\r\n.\r\n",  # LF.LF
        b"a\r.\rb\r\n.\r\n",  # CR.CR
        b"a\n.\r\nb\r\n.\r\n",  # LF.CRLF
        b"a\r\n.\nb\r\n.\r\n",  # CRLF.LF
    ],
)
def test_only_crlf_dot_crlf_ends_a_body(wire: bytes) -> None:
    body = dot_body().parse(wire)
    assert body.endswith(b"b\r\n")
    lines = decode(text_line(), [wire])
    assert lines[-1] == b"." and lines.count(b".") == 1
    assert any(bare_newline(line) for line in lines)


def test_text_lines_are_at_most_1000_octets() -> None:
    assert decode(text_line(), [b"x" * 998 + b"\r\n"]) == [b"x" * 998]
    with pytest.raises(FrameTooLong):
        decode(text_line(), [b"x" * 999 + b"\r\n"])
    with pytest.raises(TooLongError):
        dot_body(max_length=4).parse(b"abcdefgh\r\n.\r\n")


_LINE = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_MESSAGE = st.lists(_LINE, max_size=8).map(lambda ls: b"".join(x + b"\r\n" for x in ls))


@given(_MESSAGE)
def test_bodies_round_trip(message: bytes) -> None:
    assert dot_body().parse(dot_body().build(message)) == message


@given(_MESSAGE, st.data())
def test_body_lines_do_not_depend_on_reads(message: bytes, data: st.DataObject) -> None:
    wire = stuff(message)
    lines = decode(text_line(), data.draw(chunkings(wire)))
    assert lines[-1] == b"."
    assert b"".join(unstuff(x) + b"\r\n" for x in lines[:-1]) == message


PATH_OCTETS = st.sampled_from(
    [
        b"a",
        b"Z",
        b"0",
        b".",
        b"-",
        b"+",
        b"@",
        b"<",
        b">",
        b'"',
        b"\\",
        b",",
        b":",
        b"[",
        b"]",
        b"(",
        b")",
        b" ",
        b"\x80",
        b"=",
        b"_",
        b"%",
        b"\x00",
    ]
)
PIECE = st.lists(PATH_OCTETS, max_size=6).map(b"".join)
#: mostly near a mailbox: a local part, an ``@``, a domain or an address literal, each
#: with odd octets in it
PATHS = st.one_of(
    st.lists(PATH_OCTETS, max_size=14).map(b"".join),
    st.tuples(PIECE, st.sampled_from([b"@", b"", b"@@"]), PIECE).map(b"".join),
    st.tuples(
        st.sampled_from([b"a", b"a.b", b'"q"']),
        st.just(b"@["),
        st.lists(
            st.sampled_from([b"1", b".", b":", b"x", b">", b'"', b"@", b",", b"<"]), max_size=6
        ),
        st.sampled_from([b"]", b"", b"]]"]),
    ).map(lambda parts: parts[0] + parts[1] + b"".join(parts[2]) + parts[3]),
)


@settings(max_examples=400, deadline=None)
@given(PATHS, st.sampled_from([b"FROM", b"TO"]))
def test_a_path_is_read_alike_with_parameters_after_it_or_none(
    path: bytes, keyword: bytes
) -> None:
    """A path alone takes the one-match way, one with a parameter after it the long way:
    the two accept, refuse and read every path alike (a literal once let ``[x>y]``
    through the first and not the second)."""

    def read(argument: bytes) -> bytes | None:
        try:
            return parse_path(argument, keyword)[0]
        except ArgumentError:
            return None

    argument = keyword + b":<" + path + b">"
    assert read(argument) == read(argument + b" X=1")


@pytest.mark.parametrize(
    "address", [b"a@[x>y]", b'a@[("]', b"a@[b@evil.example]", b"a@[x,b@y]", b"a@[1.2.3.4>]"]
)
def test_an_address_literal_hides_no_bracket_quote_at_or_comma(address: bytes) -> None:
    for argument in (b"TO:<" + address + b">", b"TO:<" + address + b"> X=1"):
        with pytest.raises(ArgumentError):
            parse_path(argument, b"TO")
