"""Tiny chunks: a chunked body of many 1-byte chunks (and any body fed one byte a read)
arrives whole, and costs a bounded number of the machine's transitions per chunk, the
same however the bytes are cut (the cost is counted, never timed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from http_helpers import responses, serve
from hypothesis import given, settings
from hypothesis import strategies as st

from statewire.machine import observe, unobserve
from statewire.protocols.http import BODY_PIECE, Request, Response

HEAD = b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
GET = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"


def chunked(pieces: list[bytes]) -> bytes:
    return HEAD + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


class Counter:
    """Counts the transitions (state changes and self-loops) of every connection."""

    def __init__(self) -> None:
        self.transitions: list[tuple[str, str, str]] = []

    def started(self, protocol: Any) -> Any:
        def transition(old: str, input: str, new: str, frame: Any) -> None:
            self.transitions.append((old, input, new))

        return transition

    def received(self, protocol: Any, size: int) -> None:
        pass

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        pass

    def stopped(self, protocol: Any) -> None:
        pass


@contextmanager
def counting() -> Iterator[Counter]:
    counter = Counter()
    observe(counter)
    try:
        yield counter
    finally:
        unobserve(counter)


async def sizes(request: Request, response: Response) -> None:
    """Answers the number of body pieces the handler saw and the body."""
    pieces = [piece async for piece in request.body]
    await response.send(200, [], b"%d %s" % (len(pieces), b"".join(pieces)))


def test_hundreds_of_one_byte_chunks_arrive_whole_fed_whole_or_a_byte_a_read() -> None:
    body = bytes(range(256)) * 3  # 768 chunks of one byte
    wire = chunked([body[i : i + 1] for i in range(len(body))]) + GET
    whole = serve([wire], sizes)
    bytewise = serve([wire[i : i + 1] for i in range(len(wire))], sizes)
    for served in (whole, bytewise):
        (status, answer), after = responses(served.output)
        assert status == 200 and answer.split(b" ", 1)[1] == body
        assert after == (200, b"0 ")  # the request after it is framed where it starts
        assert served.state == "head" and not served.closed


def test_a_one_byte_chunk_costs_one_transition_read_whole_three_at_most_cut() -> None:
    counts: dict[int, list[int]] = {}
    for chunks in (300, 600):
        wire = chunked([b"x"] * chunks)
        for cut in (len(wire), 7, 1):
            with counting() as counter:
                served = serve([wire[i : i + cut] for i in range(0, len(wire), cut)], sizes)
            assert responses(served.output)[0][1].endswith(b" " + b"x" * chunks)
            per_chunk = [t for t in counter.transitions if t[0] in ("chunk_size", "chunk_whole")]
            counts.setdefault(cut if cut < 10 else 0, []).append(len(per_chunk))
            # a chunk whose data and CRLF came with its size line: the size line's loop
            # (chunk_size -> chunk_size), the data read with it; else also the move to
            # chunk_whole and back, its data and CRLF one frame; the last chunk leaves
            # for the trailers
            moves = {
                ("chunk_size", "short_chunk", "chunk_size"),
                ("chunk_size", "chunk_follows", "chunk_whole"),
                ("chunk_whole", "whole_chunk", "chunk_size"),
            }
            assert all(t in moves for t in per_chunk[:-1])
            assert per_chunk[-1] == ("chunk_size", "last_chunk", "trailers")
            loops = per_chunk.count(("chunk_size", "short_chunk", "chunk_size"))
            assert loops == chunks
            if cut == len(wire):
                assert len(per_chunk) == chunks + 1, chunks
            else:
                assert chunks + 1 < len(per_chunk) <= 3 * chunks + 1, (chunks, cut)
    for cut, (few, many) in counts.items():  # linear in the chunks, whatever the cuts
        assert many - 1 == 2 * (few - 1), cut


def test_a_long_chunk_is_still_read_in_bounded_pieces() -> None:
    data = b"y" * (3 * BODY_PIECE + 5)
    with counting() as counter:
        served = serve([chunked([data, b"z"])], sizes)
    ((_, answer),) = responses(served.output)
    assert answer == b"5 " + data + b"z"  # four pieces of the long chunk, one short chunk
    reads = [t for t in counter.transitions if t[0] == "chunk_data"]
    assert len(reads) == 4  # at most BODY_PIECE bytes a frame


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_short_and_long_chunks_around_the_piece_size_arrive_whole(data: st.DataObject) -> None:
    lengths = data.draw(
        st.lists(
            st.sampled_from(
                [1, 2, BODY_PIECE - 3, BODY_PIECE - 2, BODY_PIECE - 1, BODY_PIECE + 1]
            ),
            min_size=1,
            max_size=4,
        )
    )
    pieces = [bytes([65 + i]) * n for i, n in enumerate(lengths)]
    wire = chunked(pieces) + GET
    cut = data.draw(st.sampled_from([len(wire), 65535, 4093, 997]))
    served = serve([wire[i : i + cut] for i in range(0, len(wire), cut)], sizes)
    found = responses(served.output)
    assert [s for s, _ in found] == [200, 200]
    assert found[0][1].split(b" ", 1)[1] == b"".join(pieces)


def test_bad_framing_of_a_short_chunk_is_still_refused() -> None:
    for wire, reason in (
        (HEAD + b"1\r\nxY\r\n0\r\n\r\n", b"chunk data not followed by CRLF"),
        (HEAD + b"1;\r\nx\r\n0\r\n\r\n", b"chunk extension without a name"),
        (HEAD + b"1 \r\nx\r\n0\r\n\r\n", b"chunk size followed by something other"),
        (HEAD + b"x\r\n", b"chunk size is not hexadecimal"),
        (HEAD + b"1\nx\r\n0\r\n\r\n", b"bare LF"),
        (HEAD + b"00000000000000001\r\nx\r\n", b"more than 16 hex digits"),
    ):
        served = serve([wire])
        ((status, answer),) = responses(served.output)
        assert status == 400 and reason in answer, (wire, answer)
        assert served.closed
