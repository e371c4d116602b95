"""HTTP responses counted by status, with their durations, and SMTP messages by their reply
(``Metrics.count_responses``): in memory on an ``HTTPFactory`` (a wrapped one, one keeping
its own access log), then ``statewire serve --metrics`` over real sockets (curl's part
played by raw requests, smtplib's by smtplib), the exposition read by the Prometheus
client's own parser."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from process_helpers import ROOT
from test_http_access_log import Kept

from statewire import metrics
from statewire._histogram import Histogram
from statewire.protocol import Factory
from statewire.protocols.http import HTTPFactory, Request, Response
from statewire.proxy import ProxyProtocolFactory
from statewire.testing.differential import free_port
from statewire.testing.memory import Clock, StringTransport

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
MISSING = b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLED = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"


async def handle(request: Request, response: Response) -> None:
    if request.target == b"/":
        await response.send(200, [], b"hello\n")
    else:
        await response.send(404, [], b"not found\n")


def _feed(factory: HTTPFactory, data: bytes) -> bytes:
    protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value()


def test_responses_and_refusals_are_counted_by_status_and_timed() -> None:
    counting = metrics.Metrics()
    factory = HTTPFactory(handle, date=False)
    assert counting.count_responses(factory)
    answers = _feed(factory, GET + GET + MISSING)
    assert answers.count(b"HTTP/1.1 200 ") == 2 and answers.count(b"HTTP/1.1 404 ") == 1
    assert _feed(factory, SMUGGLED).startswith(b"HTTP/1.1 400 ")
    assert counting.responses == {
        ("HTTPServer", 200): 2,
        ("HTTPServer", 404): 1,
        ("HTTPServer", 400): 1,
    }
    histogram = counting.durations["HTTPServer"]
    assert histogram.count == 4 and histogram.sum >= 0.0
    snapshot = counting.snapshot()
    assert snapshot["http_responses_total"][("HTTPServer", 200)] == 2
    assert snapshot["http_request_duration_seconds_count"] == {"HTTPServer": 4}
    text = counting.exposition()
    assert 'statewire_http_responses_total{protocol="HTTPServer",status="404"} 1\n' in text
    assert 'statewire_http_request_duration_seconds_count{protocol="HTTPServer"} 4\n' in text
    assert (
        'statewire_http_request_duration_seconds_bucket{le="+Inf",protocol="HTTPServer"} 4\n'
        in text
    )


def test_a_kept_access_log_goes_on_writing_and_counting_twice_counts_once() -> None:
    kept = Kept()
    counting = metrics.Metrics()
    factory = HTTPFactory(handle, date=False, access_log=kept)
    assert counting.count_responses(factory)
    assert counting.count_responses(factory)  # (the same counters: not wrapped twice)
    _feed(factory, GET + MISSING)
    assert [entry.status for entry in kept.entries] == [200, 404]
    assert counting.responses == {("HTTPServer", 200): 1, ("HTTPServer", 404): 1}


def test_a_wrapped_http_factory_is_counted_and_others_are_left_alone() -> None:
    counting = metrics.Metrics()
    inner = HTTPFactory(handle, date=False)
    assert counting.count_responses(ProxyProtocolFactory(inner))
    assert inner.access_log is not None
    plain = Factory()
    assert not counting.count_responses(plain)
    assert "statewire_http" not in counting.exposition()  # (nothing counted: no family)


def test_the_histogram_counts_a_value_on_a_bound_in_that_bucket() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(value)
    assert list(histogram.cumulative()) == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert histogram.count == 5 and histogram.sum == pytest.approx(4.65)


def _scrape(url: str, server: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text: str = answer.read().decode()
                return text
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "no metrics"
            time.sleep(0.05)


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_serve_metrics_counts_the_http_servers_responses_by_status(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port, metrics_port = free_port(), free_port()
    log = tmp_path / "access.log"
    command = [sys.executable, "-m", "statewire", "serve", "examples/httpd.py:factory"]
    command += ["--listen", f"tcp:{port}:interface=127.0.0.1", "--access-log", str(log)]
    command += ["--metrics", f"tcp:{metrics_port}:interface=127.0.0.1"]
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        _scrape(url, server)  # (serving)
        close = b"Connection: close\r\n\r\n"
        for _ in range(3):
            assert _ask(port, GET.replace(b"\r\n\r\n", b"\r\n" + close)).startswith(
                b"HTTP/1.1 200"
            )
        assert _ask(port, MISSING.replace(b"\r\n\r\n", b"\r\n" + close)).startswith(
            b"HTTP/1.1 404"
        )
        assert _ask(port, SMUGGLED).startswith(b"HTTP/1.1 400")
        families = {f.name: f for f in text_string_to_metric_families(_scrape(url, server))}
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    statuses = {
        s.labels["status"]: s.value
        for s in families["statewire_http_responses"].samples
        if s.name.endswith("_total")
    }
    assert statuses == {"200": 3, "404": 1, "400": 1}, output
    histogram = families["statewire_http_request_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = [s for s in histogram.samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf" and counts[-1] == 5
    count = [s.value for s in histogram.samples if s.name.endswith("_count")]
    assert count == [5]
    # the access log asked for is written still, a line a response
    assert [line.split('" ')[1].split()[0] for line in log.read_text().splitlines()] == [
        "200", "200", "200", "404", "400",
    ]  # fmt: skip


def test_serve_metrics_counts_the_smtp_servers_messages_by_reply(tmp_path: Path) -> None:
    import smtplib

    from prometheus_client.parser import text_string_to_metric_families

    port, metrics_port = free_port(), free_port()
    command = [sys.executable, "-m", "statewire", "serve", "examples/smtpd.py:factory"]
    command += ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    command += ["--metrics", f"tcp:{metrics_port}:interface=127.0.0.1"]
    environment = {**os.environ, "SMTPD_MAILDIR": str(tmp_path / "maildir")}
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        _scrape(url, server)  # (serving)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for n in range(2):
                client.sendmail("a@example.org", ["b@example.org"], f"Subject: {n}\r\n\r\nhi\r\n")
            # a message its session ends in: no answer (0)
            client.mail("a@example.org")
            client.rcpt("b@example.org")
            client.putcmd("data")
            assert client.getreply()[0] == 354
            client.send(b"half a message\r\n")
            client.close()
        deadline = time.monotonic() + 10
        while True:  # (the cut message is counted as the server sees the end: a moment)
            families = {f.name: f for f in text_string_to_metric_families(_scrape(url, server))}
            found = families.get("statewire_smtp_messages")
            samples = [] if found is None else found.samples
            statuses = {s.labels["status"]: s.value for s in samples}
            if "0" in statuses or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert statuses == {"250": 2, "0": 1}, output
    assert "statewire_http_responses" not in families  # (its own metrics server not counted)


def test_a_factory_counted_first_still_keeps_the_access_log_asked_later() -> None:
    counting = metrics.Metrics()
    factory = HTTPFactory(handle, date=False)
    counting.count_responses(factory)
    factory.log_access()  # (what --access-log asks: a log, besides the counting)
    records: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("statewire.access")
    handler = Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        _feed(factory, GET)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert len(records) == 1 and '"GET / HTTP/1.1" 200' in records[0]
    assert counting.responses == {("HTTPServer", 200): 1}


def test_a_factory_counts_for_the_last_metrics_that_asked_and_disable_gives_its_log_back() -> None:
    first, second = metrics.Metrics(), metrics.Metrics()
    kept = Kept()
    factory = HTTPFactory(handle, date=False, access_log=kept)
    first.count_responses(factory)
    second.count_responses(factory)
    first.count_responses(factory)
    _feed(factory, GET)
    assert first.responses == {("HTTPServer", 200): 1} and not second.responses
    assert len(kept.entries) == 1
    first.stop_counting()
    assert factory.access_log is kept
    counting = metrics.enable()
    try:
        counting.count_responses(factory)
    finally:
        metrics.disable()  # (stops counting too)
    assert factory.access_log is kept
    _feed(factory, GET)
    assert not counting.responses and len(kept.entries) == 2


def test_a_histogram_refuses_bounds_it_cannot_write() -> None:
    for bounds in ((1.0, float("inf")), (1.0, 0.5), (0.1, 0.1), (float("nan"),)):
        with pytest.raises(ValueError, match="finite and rising"):
            Histogram(bounds)
