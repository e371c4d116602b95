"""Coverage-guided fuzzing of a grammar's framer and of a declared protocol, with atheris.

Not part of the suite (atheris is not a dependency): a long exploratory run, from the
project's root:

    pip install atheris
    mkdir -p /tmp/corpus
    python tests/fuzz_atheris.py /tmp/corpus -max_total_time=3600 -max_len=4096

A finding is an exception out of ``TestOneInput``: the grammar delivered other frames (or
another error) for another chunking, the framer or the protocol raised, or an ERROR record
was logged (turned into an exception). Replay one with ``python tests/fuzz_atheris.py
crash-<hash>``, then make it a regular test. Swap ``upload.factory`` or the grammar to fuzz
something else.
"""

import logging
import sys

import atheris

with atheris.instrument_imports():
    from grammars import netstring
    from statewire.framing import Framer
    from statewire.testing.memory import Clock, StringTransport

    sys.path.insert(0, "examples")
    import upload


class _Errors(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:  # our own code raised: a finding
            raise AssertionError(record.getMessage())


logging.getLogger().addHandler(_Errors())
logging.getLogger().setLevel(logging.INFO)
logging.getLogger("statewire").propagate = True


def cuts(data: bytes) -> list[bytes]:
    """Split the input at points taken from its first byte (chunking must not matter)."""
    step = (data[0] % 7 + 1) if data else 1
    return [data[i : i + step] for i in range(0, len(data), step)]


def framed(chunks: list[bytes]) -> tuple[list[object], list[str]]:
    frames: list[object] = []
    errors: list[str] = []
    framer = Framer(
        netstring(max_length=1000),
        frames.append,
        on_error=lambda error: errors.append(type(error).__name__),
    )
    for chunk in chunks:
        if errors:  # after a framing error the framer is closed (Policy.CLOSE)
            break
        framer.feed(chunk)
    return frames, errors


def TestOneInput(data: bytes) -> None:
    # 1. the grammar: one chunk or many, the same frames and the same error
    assert framed([data]) == framed(cuts(data))
    # 2. the protocol: any bytes in any state are answered or refused, never raise
    protocol = upload.factory.buildProtocol(None)
    protocol.clock = Clock()  # the timeouts run on a test clock, no reactor needed
    protocol.makeConnection(StringTransport())
    for chunk in cuts(data):
        protocol.dataReceived(chunk)
    protocol.clock.advance(60)  # let the idle timeout fire too


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
