"""Seeing a running server: a log line per transition (``tracing``), counters in the
Prometheus text format (``metrics``), and the diagram drawn with a live server's counts —
in memory on the upload example, then ``statewire serve --trace --metrics`` over a real
socket, its endpoint parsed by the Prometheus client library's own parser."""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from types import ModuleType

import pytest
from process_helpers import EXAMPLES, ROOT, recv_exactly

from statewire import metrics, tracing
from statewire.machine import graph_of
from statewire.testing.differential import free_port
from statewire.testing.memory import Clock, StringTransport

SESSION = b"USER alice\r\nPUT notes 5\r\nhelloGET notes\r\nNOPE\r\nPUT early\r\nQUIT\r\n"
#: the edges SESSION walks, as the diagram names them
PATH = [
    ("anonymous", "user", "ready"),
    ("ready", "put", "receiving"),
    ("receiving", "body", "ready"),
    ("ready", "get", "ready"),
    ("ready", "unknown", "ready"),
    ("ready", "quit", "closed"),
]


def _upload() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upload_traced", EXAMPLES / "upload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


upload = _upload()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    handler = Lines()
    logger = logging.getLogger("statewire.trace.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler.lines
    logger.removeHandler(handler)
    tracing.disable()
    metrics.disable()


def _connect() -> tuple[object, StringTransport]:
    protocol = upload.UploadFactory().buildProtocol(None)
    protocol.clock = Clock()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def _edges(lines: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for line in lines:
        _, _, old, arrow, new, *_ = line.split(" ")
        found.append((old, arrow.strip("->").strip("-"), new))
    return found


def test_a_traced_session_is_the_diagram_path_it_walks(lines: list[str]) -> None:
    tracing.enable(logging.getLogger("statewire.trace.test"))
    protocol, transport = _connect()
    protocol.dataReceived(SESSION)  # type: ignore[attr-defined]
    assert _edges(lines) == PATH
    drawn = {(t.source, t.input, t.target) for t in graph_of(upload.UploadServer).transitions}
    assert set(PATH) <= drawn  # every traced step is an edge of the diagram
    assert lines[1].endswith("(11 bytes)")  # the PUT line that caused it
    assert lines[0].startswith("#1 ")
    # the refusal (PUT without its size) changed nothing and traced nothing
    assert b"501 bad arguments" in transport.value()


def test_connections_started_after_disable_are_not_traced(lines: list[str]) -> None:
    tracing.enable(logging.getLogger("statewire.trace.test"))
    tracing.disable()
    protocol, _ = _connect()
    protocol.dataReceived(SESSION)  # type: ignore[attr-defined]
    assert lines == []


def test_lines_past_the_rate_are_dropped_and_counted(lines: list[str]) -> None:
    now = [0.0]
    tracer = tracing.Tracer(
        logging.getLogger("statewire.trace.test"), rate=2, clock=lambda: now[0]
    )
    callback = tracer.started(object())
    for _ in range(5):
        callback("a", "go", "b", b"x")
    assert len(lines) == 2 and tracer.dropped == 3
    now[0] += 10
    callback("a", "go", "b", None)
    assert lines[-1].endswith("(-) [3 lines dropped]")
    with pytest.raises(ValueError):
        tracing.Tracer(rate=0)


def test_metrics_count_connections_edges_errors_and_bytes(lines: list[str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    counting = metrics.enable()
    first, _ = _connect()
    first.dataReceived(SESSION)  # type: ignore[attr-defined]
    second, _ = _connect()
    second.dataReceived(b"USER bob\r\nPUT x 3\r\nab")  # type: ignore[attr-defined]
    snapshot = counting.snapshot()
    assert snapshot["connections_total"] == {"UploadServer": 2}
    assert snapshot["connections_open"] == {
        ("UploadServer", "closed"): 1,
        ("UploadServer", "receiving"): 1,
    }
    edges = snapshot["transitions_total"]
    assert edges[("UploadServer", "anonymous", "user", "ready")] == 2
    assert edges[("UploadServer", "ready", "get", "ready")] == 1
    assert snapshot["errors_total"] == {("UploadServer", "BadArguments", "remote"): 1}
    assert snapshot["received_bytes_total"] == {"UploadServer": len(SESSION) + 21}
    sent = len(first.transport.value()) + len(second.transport.value())  # type: ignore[attr-defined]
    assert snapshot["sent_bytes_total"] == {"UploadServer": sent} and sent > 0
    families = {f.name: f for f in text_string_to_metric_families(counting.exposition())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    key = (
        "statewire_transitions_total",
        (("from", "ready"), ("input", "put"), ("protocol", "UploadServer"), ("to", "receiving")),
    )
    assert samples[key] == 2
    assert families["statewire_connections_open"].type == "gauge"
    assert families["statewire_transitions"].type == "counter"


def test_serve_trace_and_metrics_then_the_diagram_with_its_counts() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port, metrics_port = free_port(), free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statewire",
            "serve",
            "examples/upload.py:factory",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--trace",
            "--metrics",
            f"tcp:{metrics_port}:interface=127.0.0.1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no metrics"
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(SESSION)
            expected = b"230 hello alice\r\n"
            assert recv_exactly(client, len(expected)) == expected
            received = len(expected)
            while chunk := client.recv(65536):  # until QUIT closes it
                received += len(chunk)
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert {"statewire_transitions", "statewire_connections_open"} <= set(families)
        sent = {s.labels["protocol"]: s.value for s in families["statewire_sent_bytes"].samples}
        assert sent["UploadServer"] == received  # every byte the client read, counted
        drawn = subprocess.run(
            [
                sys.executable,
                "-m",
                "statewire",
                "diagram",
                "examples/upload.py:UploadServer",
                "--format",
                "mermaid",
                "--counts",
                url,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drawn.returncode == 0, drawn.stderr
        assert "s_ready --> s_receiving : PUT / start_upload [1]" in drawn.stdout
        assert "s_anonymous --> s_closed : QUIT / say_bye [0]" in drawn.stdout
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert "ready --put--> receiving (11 bytes)" in out, out


def test_diagram_counts_refuses_what_is_not_a_metrics_url() -> None:
    drawn = subprocess.run(
        [
            sys.executable,
            "-m",
            "statewire",
            "diagram",
            "examples/upload.py:UploadServer",
            "--counts",
            "file:///etc/passwd",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert drawn.returncode == 1
    assert "cannot read the counts" in drawn.stderr and "Traceback" not in drawn.stderr
