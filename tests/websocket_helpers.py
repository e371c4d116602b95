"""What the WebSocket tests share: client frames built by hand, and a session of
:class:`~statewire.protocols.websocket.WebSocket` run in memory on a transport that keeps
what it is given."""

from __future__ import annotations

from typing import Any

from grammars.websocket import FRAME, frame, unmask
from statewire.protocols.websocket import WebSocket
from statewire.testing.memory import Clock


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"m4sk", rsv1: bool = False
) -> bytes:
    """A client frame: :func:`frame`'s header with the mask bit and the mask, masked
    (``mask=b""``: an unmasked frame, which a server refuses)."""
    built = frame(opcode, payload, fin, rsv1)
    header = built[: len(built) - len(payload)]
    if not mask:
        return built
    return bytes([header[0], header[1] | 0x80]) + header[2:] + mask + unmask(mask, payload)


class Recorded(WebSocket):
    """A session that records its messages and its endings."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.endings: list[tuple[int, str]] = []

    def messageReceived(self, message: str | bytes) -> None:
        self.messages.append(message)

    def websocketClosed(self, code: int, reason: str) -> None:
        self.endings.append((code, reason))


class Kept:
    """A transport that keeps what is written, and whether it was closed; its ``reactor``
    is a clock the test advances."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False
        self.reactor = Clock()

    def write(self, data: bytes) -> None:
        self.data += data

    def loseConnection(self) -> None:
        self.closed = True

    abortConnection = loseConnection

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


def session(chunks: list[bytes], protocol: Recorded | None = None) -> tuple[Recorded, Kept]:
    """``protocol`` (a new :class:`Recorded` by default) fed ``chunks`` one read each."""
    protocol = Recorded() if protocol is None else protocol
    transport = Kept()
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return protocol, transport


def frames_of(data: bytes) -> list[Any]:
    """The frames ``data`` holds, one after another."""
    frames = []
    while data:
        parsed = FRAME.parse(data)
        frames.append(parsed)
        data = data[len(FRAME.build(parsed)) :]
    return frames


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (positions inside it; others ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
