"""The line-based and declarative examples (answer, logging_protocol, keyvalue, upload), each
run as its own process and talked to over a real socket on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import struct
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from automat import MethodicalMachine
from process_helpers import EXAMPLES, Server, running

from statewire.declarative import MachineProtocol
from statewire.machine import Plan


def serve(target: str, env: dict[str, str] | None = None) -> AbstractContextManager[Server]:
    """The example served by ``statewire serve FILE.py:factory``."""
    return running(
        "-m", "statewire", "serve", target, "--listen", "tcp:0:interface=127.0.0.1", env=env
    )


class Client:
    """A blocking client with a receive buffer: read lines, counted bytes or frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise EOFError(f"closed after {self.buffer!r}")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"closed after {self.buffer!r}")
        data, _, self.buffer = self.buffer.partition(b"\r\n")
        return data

    def frame(self) -> bytes:
        (size,) = struct.unpack(">I", self.read(4))
        return self.read(size)

    def closed(self) -> bool:
        """Whether the server closes the connection (after what is buffered)."""
        while self._fill():
            pass
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "serve"])
def test_answer_replies_per_the_seed(how: str) -> None:
    starting = (
        running("examples/answer.py", "--port", "0")
        if how == "script"
        else serve("examples/answer.py:factory")
    )
    with starting as server, Client(server.port) as client:
        client.send(b"How are you?\r\n")
        assert client.line() == b"Fine"
        client.send(b"What is this?\r\nHow are")  # two lines, the second cut in the middle
        assert client.line() == b"I don't know what you mean"
        client.send(b" you?\r\n\r\n")
        assert client.line() == b"Fine"
        assert client.line() == b"I don't know what you mean"  # the empty line
        client.send(b"how are you?\r\n")  # case matters
        assert client.line() == b"I don't know what you mean"
        server.stop()


# -- logging_protocol -----------------------------------------------------------------------


def send_and_wait(port: int, data: bytes) -> None:
    """Send ``data``, half-close and wait for the server to close: by then it read it all."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""


def test_logging_protocol_appends_lines_and_closes_the_file_on_sigterm(tmp_path: Path) -> None:
    logfile = tmp_path / "lines.log"
    logfile.write_bytes(b"earlier\n")  # opened for appending
    command = ("examples/logging_protocol.py", "--port", "0", "--logfile", str(logfile))
    with running(*command) as server:
        send_and_wait(server.port, b"first\r\nsecond\r\nthi")  # the unfinished line is not logged
        send_and_wait(server.port, b"third\r\n")
        out = server.stop(signal.SIGTERM)
    assert logfile.read_bytes() == b"earlier\nfirst\nsecond\nthird\n"
    assert "stopped listening" in out


def test_logging_protocol_served_writes_to_the_default_file(tmp_path: Path) -> None:
    with serve("examples/logging_protocol.py:factory", env={"TMPDIR": str(tmp_path)}) as server:
        send_and_wait(server.port, b"served\r\n")
        server.stop(signal.SIGTERM)
    assert (tmp_path / "statewire-logging-protocol.log").read_bytes() == b"served\n"


def test_logfile_factory_opens_in_start_and_closes_in_stop(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import logging_protocol
    finally:
        sys.path.remove(str(EXAMPLES))
    factory = logging_protocol.LogfileFactory(tmp_path / "x.log")
    assert not hasattr(factory, "fp")  # nothing opened before the factory starts
    factory.doStart()
    factory.fp.write(b"line\n")
    factory.doStop()
    assert factory.fp.closed
    assert (tmp_path / "x.log").read_bytes() == b"line\n"


# -- keyvalue -------------------------------------------------------------------------------

OK, NOT_FOUND, ERROR = b"\x00", b"\x01", b"\x02"


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def ask(client: Client, body: bytes) -> bytes:
    client.send(frame(body))
    return client.frame()


def test_keyvalue_set_get_del_round_trips() -> None:
    with running("examples/keyvalue.py", "--port", "0") as server:
        with Client(server.port) as client:
            assert ask(client, b"Gkey") == NOT_FOUND
            assert ask(client, b"Skey\0value\0with\0zeros") == OK
            assert ask(client, b"Gkey") == OK + b"value\0with\0zeros"
            assert ask(client, b"Skey\0") == OK  # an empty value is a value
            assert ask(client, b"Gkey") == OK
            assert ask(client, b"S\0empty key") == OK
            assert ask(client, b"G") == OK + b"empty key"
            assert ask(client, b"Skey\0v2") == OK
        with Client(server.port) as other:  # the store is the factory's
            assert ask(other, b"Gkey") == OK + b"v2"
            assert ask(other, b"Dkey") == OK
            assert ask(other, b"Gkey") == NOT_FOUND
            assert ask(other, b"Dkey") == NOT_FOUND
            assert ask(other, b"Q") == OK + b"bye"
            assert other.closed()
        server.stop(signal.SIGTERM)


def test_keyvalue_frames_cut_anywhere_and_pipelined() -> None:
    requests = frame(b"Sa\x001") + frame(b"Sb\x00" + bytes(range(256))) + frame(b"Ga")
    requests += frame(b"Gb") + frame(b"Da") + frame(b"Ga")
    with running("examples/keyvalue.py", "--port", "0") as server:
        with Client(server.port) as client:
            for i in range(len(requests)):  # one byte per send
                client.send(requests[i : i + 1])
                time.sleep(0.0005)
            replies = [client.frame() for _ in range(6)]
            assert replies == [OK, OK, OK + b"1", OK + bytes(range(256)), OK, NOT_FOUND]
        with Client(server.port) as client:  # all at once
            client.send(requests)
            assert [client.frame() for _ in range(6)] == replies
        server.stop()


def test_keyvalue_unknown_opcode_and_bad_request_keep_the_connection() -> None:
    with running("examples/keyvalue.py", "--port", "0") as server:
        with Client(server.port) as client:
            assert ask(client, b"Xkey") == ERROR + b"unknown opcode"
            assert ask(client, b"") == ERROR + b"unknown opcode"  # no opcode at all
            assert ask(client, b"g") == ERROR + b"unknown opcode"  # opcodes are case-sensitive
            assert ask(client, b"Snoseparator") == ERROR + b"bad request"
            assert ask(client, b"Sk\0v") == OK  # still served
            assert ask(client, b"Gk") == OK + b"v"
        server.stop()


def test_keyvalue_oversize_length_closes_only_that_connection() -> None:
    with running("examples/keyvalue.py", "--port", "0") as server:
        with Client(server.port) as bystander, Client(server.port) as offender:
            assert ask(bystander, b"Sk\0kept") == OK
            offender.send(struct.pack(">I", 64 * 1024 + 1))  # the header alone is refused
            assert offender.frame() == ERROR + b"bad request"
            assert offender.closed()
            assert ask(bystander, b"Gk") == OK + b"kept"  # the open connection goes on
        with Client(server.port) as second:  # and new clients are served
            assert ask(second, b"Gk") == OK + b"kept"
            assert ask(second, b"S" + b"x" * (64 * 1024 - 1)) == ERROR + b"bad request"
            big = b"k\0" + b"v" * (64 * 1024 - 3)  # exactly 64 KiB with the opcode
            assert ask(second, b"S" + big) == OK
            assert ask(second, b"Gk") == OK + b"v" * (64 * 1024 - 3)
        server.stop()


def test_keyvalue_idle_timeout_closes_a_silent_client() -> None:
    with running("examples/keyvalue.py", "--port", "0", "--idle", "0.5") as server:
        with Client(server.port) as client:
            for _ in range(3):  # activity keeps it open past the timeout
                time.sleep(0.25)
                assert ask(client, b"Gk") == NOT_FOUND
            started = time.monotonic()
            assert client.frame() == ERROR + b"idle too long"
            assert client.closed()
            assert 0.3 < time.monotonic() - started < 5
        server.stop()


def test_keyvalue_served_by_the_cli() -> None:
    with serve("examples/keyvalue.py:factory") as server, Client(server.port) as client:
        assert ask(client, b"Sk\0v") == OK
        assert ask(client, b"Gk") == OK + b"v"
        out = server.stop(signal.SIGTERM)
    assert "stopped" in out


# -- upload ---------------------------------------------------------------------------------


def command(client: Client, line: bytes) -> bytes:
    client.send(line + b"\r\n")
    return client.line()


def test_upload_session() -> None:
    with running("examples/upload.py", "--port", "0") as server, Client(server.port) as client:
        assert command(client, b"USER alice") == b"230 hello alice"
        assert command(client, b"PUT notes.txt 5") == b"150 send 5 bytes"
        client.send(b"hello")
        assert client.line() == b"226 stored notes.txt"
        assert command(client, b"GET notes.txt") == b"213 5"
        assert client.read(5) == b"hello"
        assert command(client, b"GET missing") == b"550 no such file"
        assert command(client, b"NOOP") == b"500 unknown command"
        assert command(client, b"QUIT") == b"221 bye"
        assert client.closed()
        server.stop()


def test_upload_out_of_order_and_bad_arguments_keep_the_connection() -> None:
    with running("examples/upload.py", "--port", "0") as server, Client(server.port) as client:
        assert command(client, b"PUT x 3") == b"503 bad sequence of commands"
        assert command(client, b"GET x") == b"503 bad sequence of commands"
        assert command(client, b"USER bob") == b"230 hello bob"  # still open, still anonymous
        assert command(client, b"USER bob") == b"503 bad sequence of commands"
        assert command(client, b"PUT x notanumber") == b"501 bad arguments"
        assert command(client, b"PUT x") == b"501 bad arguments"
        assert command(client, b"PUT x 0") == b"501 bad arguments"
        assert command(client, b"PUT x 3") == b"150 send 3 bytes"  # still in ready
        client.send(b"abc")
        assert client.line() == b"226 stored x"
        server.stop()


def test_upload_body_in_many_small_sends_is_raw() -> None:
    body = b"QUIT\r\nGET x\r\n" + bytes(range(256)) * 4  # line-like bytes are data here
    with running("examples/upload.py", "--port", "0") as server, Client(server.port) as client:
        assert command(client, b"USER carol") == b"230 hello carol"
        assert command(client, b"PUT blob %d" % len(body)) == b"150 send %d bytes" % len(body)
        for i in range(0, len(body), 7):
            client.send(body[i : i + 7])
            time.sleep(0.0005)
        assert client.line() == b"226 stored blob"
        assert command(client, b"GET blob") == b"213 %d" % len(body)
        assert client.read(len(body)) == body
        # a command, its body and the next command in one send
        client.send(b"PUT small 3\r\nxyzGET small\r\n")
        assert client.line() == b"150 send 3 bytes"
        assert client.line() == b"226 stored small"
        assert client.line() == b"213 3"
        assert client.read(3) == b"xyz"
        server.stop()


# -- statewire: a MethodicalMachine input declared as ``lost`` --------------------------------


def test_methodical_input_can_be_declared_as_lost() -> None:
    """``lost = <a MethodicalMachine input>`` in the class body, as the docs allow inputs to
    be named by themselves. Fails today: ``MachineProtocol.__init_subclass__`` reads
    ``cls.lost``, which runs automat's ``MethodicalInput.__get__(None, cls)``; that binds
    a transitioner to ``None`` and raises ``AttributeError: 'NoneType' object has no
    attribute '_symbol_0'`` at class creation. (``examples/keyvalue.py`` names its ``lost``
    input by string instead.)"""

    class Probe(MachineProtocol):
        _machine = MethodicalMachine()
        machine = _machine

        @_machine.state(initial=True)
        def open(self) -> None:
            "Connected."

        @_machine.state()
        def gone(self) -> None:
            "Disconnected."

        @_machine.input()
        def disconnected(self, reason: object) -> None:
            "The connection was lost."

        open.upon(disconnected, enter=gone, outputs=[])
        lost = disconnected

    assert Plan.of(Probe).lost == "disconnected"
