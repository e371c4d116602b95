"""The floor servers of ``bench/`` (``http_floor.py``, ``smtp_floor.py``) do the work they
stand for, whatever the reads: docs/performance.md reads the speed targets against them,
so a floor that skipped a message or answered wrongly would make those readings wrong.
And ``run.py`` takes their ``floor:`` lines into its table (``real_rows.py``)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import http_floor  # noqa: E402
import real_rows  # noqa: E402
import smtp_floor  # noqa: E402


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- SMTP -------------------------------------------------------------------------------------


class _Kept(smtp_floor.Sink):
    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.bodies.append(b"".join(self.parts))


class _Keeping(smtp_floor.Handler):
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.senders: list[bytes] = []

    def mail(self, session: object, sender: bytes, parameters: dict[bytes, bytes | None]) -> None:
        self.senders.append(sender)

    def message(self, session: object, envelope: smtp_floor.Envelope) -> smtp_floor.Sink:
        return _Kept(self.bodies)


LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"abc", b"a.b", b"x" * 40]), max_size=6)


@given(st.lists(LINES, min_size=1, max_size=3), st.lists(st.integers(0, 2000), max_size=12))
def test_the_smtp_floor_takes_every_message_whole_whatever_the_reads(
    messages: list[list[bytes]], cuts: list[int]
) -> None:
    wire = b"EHLO x\r\n"
    for lines in messages:
        stuffed = b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n" for line in lines)
        wire += b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + stuffed + b".\r\n"
    wire += b"QUIT\r\n"
    sink = smtp_floor.ApiFloorSink()
    handler = sink.handler = _Keeping()
    written: list[bytes] = []
    closed: list[bool] = []
    sink.begin(written.append, lambda: closed.append(True))
    for piece in _pieces(wire, cuts):
        sink.data_received(piece)
    replies = b"".join(written)
    assert handler.bodies == [b"".join(line + b"\r\n" for line in lines) for lines in messages]
    assert handler.senders == [b"a@b"] * len(messages)
    assert replies.count(b"250 2.0.0 Ok: queued") == len(messages)
    assert replies.endswith(b"221 Bye\r\n") and closed == [True]


# -- HTTP -------------------------------------------------------------------------------------


@given(
    st.lists(st.one_of(st.just(b""), st.binary(max_size=300)), min_size=1, max_size=5),
    st.lists(st.integers(0, 3000), max_size=12),
)
def test_the_http_floor_answers_every_request_in_order_whatever_the_reads(
    bodies: list[bytes], cuts: list[int]
) -> None:
    wire = b""
    expected = b""
    for body in bodies:
        if body:
            wire += b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
            wire += body
            kind = b"application/octet-stream"
        else:
            wire += b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
            body, kind = http_floor.GREETING, b"text/plain; charset=utf-8"
        expected += b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            kind,
            len(body),
        )
        expected += body
    server = http_floor.ApiFloorServer()
    written: list[bytes] = []
    server.begin(written.append)
    for piece in _pieces(wire, cuts):
        server.data_received(piece)
    assert b"".join(written) == expected


def test_an_unknown_route_is_a_404_from_the_http_floor() -> None:
    server = http_floor.ApiFloorServer()
    written: list[bytes] = []
    server.begin(written.append)
    server.data_received(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    assert b"".join(written).startswith(b"HTTP/1.1 404 Not Found\r\n")


# -- run.py's rows -------------------------------------------------------------------------------


def test_run_takes_the_floor_lines_as_rows() -> None:
    http = (
        "server  GET keep-alive  GET pipelined x16  POST 1 KiB\n"
        "floor: api floor / httptools: 0.77x  0.39x  0.69x  (the handler API alone)\n"
        "floor: api floor statewire / httptools: 0.77x  0.47x  0.71x  (the handler API alone)\n"
    )
    rows = real_rows.http(http)
    assert [(row[1], row[4]) for row in rows] == [
        ("HTTP API floor (asyncio), GET keep-alive", "0.77x"),
        ("HTTP API floor (asyncio), GET pipelined x16", "0.39x"),
        ("HTTP API floor (asyncio), POST 1 KiB", "0.69x"),
        ("HTTP API floor (statewire's transport), GET keep-alive", "0.77x"),
        ("HTTP API floor (statewire's transport), GET pipelined x16", "0.47x"),
        ("HTTP API floor (statewire's transport), POST 1 KiB", "0.71x"),
    ]
    smtp = "floor: api floor statewire / aiosmtpd: 1 conn 3.45x  50 conns 15.32x  (alone)\n"
    assert [(row[1], row[3], row[4]) for row in real_rows.smtp(smtp)] == [
        ("SMTP API floor (statewire's transport), 1 conn", "aiosmtpd", "3.45x"),
        ("SMTP API floor (statewire's transport), 50 conns", "aiosmtpd", "15.32x"),
    ]


def test_run_keeps_statewire_rows_on_uvloop() -> None:
    line = "statewire-uvloop / twisted: 1 conn 1.47x (CPU 1.85x)  50 conns 2.81x (CPU 2.81x)"
    rows = real_rows.smtp(line + "  target >= 2x\n")
    assert [row[1] for row in rows] == [
        "SMTP messages, 1 conn (uvloop)",
        "SMTP messages, 50 conns (uvloop)",
    ]


def test_run_takes_the_https_ratios_as_rows() -> None:
    """bench_tls.py's ratio lines become rows, the loop named and the peer without it."""
    output = (
        "  statewire                        48,090 requests/s\n"
        "tls: GET keep-alive: statewire / httptools: 0.69x\n"
        "tls: POST 1 KiB: statewire uvloop / statewire, loop TLS uvloop: 1.76x\n"
    )
    assert [(row[1], row[3], row[4]) for row in real_rows.tls(output)] == [
        ("HTTPS (asyncio), GET keep-alive", "httptools", "0.69x"),
        ("HTTPS (uvloop), POST 1 KiB", "statewire, loop TLS", "1.76x"),
    ]
