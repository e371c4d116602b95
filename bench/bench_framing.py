"""Framing throughput: statewire's framers against Twisted's receivers, in one run.

Each contender frames the same 200 000 small frames, fed in 64 KiB chunks, each frame going
to a no-op callback. Contenders alternate round by round (A, B, A, B, ...); the table shows
the median time per frame, the spread (min-max over rounds) and the ratio of Twisted's
median to statewire's (above 1: statewire is faster). Then two linearity figures: a
protocol that switches grammar on every frame (10x the frames should take 10x the time),
and one long line fed one byte at a time, 1 MiB against 10 MiB.

    python bench/bench_framing.py [--frames N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from twisted.protocols import basic

from grammars import fixed, line, netstring, prefixed
from statewire.framing import Framer, _accel

CHUNK = 64 * 1024


class _Transport:
    disconnecting = False

    def loseConnection(self) -> None:
        raise AssertionError("the benchmark input is well formed")


def _noop(frame: object) -> None:
    pass


def _twisted(cls: type, method: str, **attributes: object) -> Callable[[list[bytes]], None]:
    def run(chunks: list[bytes]) -> None:
        receiver = type("Receiver", (cls,), {method: lambda self, frame: None, **attributes})()
        receiver.makeConnection(_Transport())
        data_received = receiver.dataReceived
        for chunk in chunks:
            data_received(chunk)

    return run


def _statewire(grammar: object) -> Callable[[list[bytes]], None]:
    def run(chunks: list[bytes]) -> None:
        feed = Framer(grammar, _noop).feed
        for chunk in chunks:
            feed(chunk)

    return run


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _payloads(count: int) -> list[bytes]:
    rng = random.Random(7)
    return [
        bytes(rng.choice(b"abcdefghij ") for _ in range(rng.randint(4, 40))) for _ in range(count)
    ]


def _time(run: Callable[[list[bytes]], None], chunks: list[bytes]) -> float:
    start = time.perf_counter()
    run(chunks)
    return time.perf_counter() - start


def compare(frames: int, rounds: int) -> None:
    payloads = _payloads(frames)
    line_g = line(b"\r\n")
    netstring_g = netstring(99999)
    prefixed_g = prefixed(4, max_length=99999)
    cases = [
        (
            "line CRLF",
            line_g,
            "LineOnlyReceiver",
            _twisted(basic.LineOnlyReceiver, "lineReceived"),
        ),
        ("line CRLF", line_g, "LineReceiver", _twisted(basic.LineReceiver, "lineReceived")),
        (
            "netstring",
            netstring_g,
            "NetstringReceiver",
            _twisted(basic.NetstringReceiver, "stringReceived"),
        ),
        (
            "prefixed u32be",
            prefixed_g,
            "Int32StringReceiver",
            _twisted(basic.Int32StringReceiver, "stringReceived"),
        ),
    ]
    print(
        f"{frames} frames of 4-40 bytes in {CHUNK // 1024} KiB chunks, {rounds} rounds, "
        "median ns/frame [min-max]"
    )
    print(f"{'grammar':<16}{'statewire':>24}{'Twisted peer':>22}{'':>24}{'ratio':>8}")
    for name, grammar, peer, peer_run in cases:
        wire = b"".join(grammar.build(p) for p in payloads)
        chunks = _chunks(wire)
        ours_run = _statewire(grammar)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            ours.append(_time(ours_run, chunks) / frames * 1e9)
            theirs.append(_time(peer_run, chunks) / frames * 1e9)
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"{name:<16}{_fmt(ours):>24}{peer:>22}{_fmt(theirs):>24}{ratio:>7.2f}x")


def _fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.0f} [{min(samples):.0f}-{max(samples):.0f}]"


def linearity(sizes: tuple[int, ...]) -> None:
    print("\none line fed 1 byte at a time (line LF, max_length = size)")
    results = []
    for size in sizes:
        framer = Framer(line(b"\n", max_length=size), _noop)
        feed = framer.feed
        data = b"x" * size + b"\n"
        pieces = [data[i : i + 1] for i in range(len(data))]
        start = time.perf_counter()
        for piece in pieces:
            feed(piece)
        elapsed = time.perf_counter() - start
        results.append(elapsed)
        print(
            f"{size / (1 << 20):6.1f} MiB: {elapsed:7.2f} s  ({elapsed / size * 1e9:.0f} ns/byte)"
        )
    print(
        f"time ratio {results[-1] / results[0]:.1f} for size ratio {sizes[-1] / sizes[0]:.0f} "
        "(linear: equal)"
    )


class _Switcher:
    """Switches between a command line and a 16-byte block after every frame."""

    def __init__(self) -> None:
        self.commands = line()
        self.block = fixed(16)
        self.frames = 0
        self.framer = Framer(self.commands, self.on_frame)

    def on_frame(self, frame: bytes) -> None:
        self.frames += 1
        framer = self.framer
        framer.switch(self.block if framer.grammar is self.commands else self.commands)


class _TwistedSwitcher(basic.LineReceiver):
    """The same protocol in Twisted: a line, then raw mode for the 16-byte block."""

    frames = 0

    def lineReceived(self, line: bytes) -> None:
        self.frames += 1
        self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        self.frames += 1
        self.setLineMode(data[16:])


def switching(counts: tuple[int, ...]) -> None:
    print("\nswitching grammar on every frame: 'set key 16' lines, each then a 16-byte block")
    results = []
    for count in counts:
        chunks = _chunks((b"set key 16\r\n" + b"b" * 16) * count)
        ours = _Switcher()
        start = time.perf_counter()
        for chunk in chunks:
            ours.framer.feed(chunk)
        elapsed = time.perf_counter() - start
        theirs = _TwistedSwitcher()
        theirs.makeConnection(_Transport())
        start = time.perf_counter()
        for chunk in chunks:
            theirs.dataReceived(chunk)
        peer = time.perf_counter() - start
        assert ours.frames == 2 * count
        results.append(elapsed)
        print(
            f"{ours.frames:>9} frames: {elapsed:6.2f} s ({elapsed / ours.frames * 1e9:.0f} "
            f"ns/frame); Twisted LineReceiver {peer:6.2f} s (frames {theirs.frames}); "
            f"ratio {peer / elapsed:.2f}x"
        )
    print(
        f"time ratio {results[-1] / results[0]:.1f} for size ratio {counts[-1] / counts[0]:.0f} "
        "(linear: equal)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small linearity sizes")
    args = parser.parse_args()
    print(f"C accelerator: {'on' if _accel.available() else 'off (pure Python)'}")
    compare(args.frames, args.rounds)
    switching((10_000, 100_000) if args.quick else (100_000, 1_000_000))
    mib = 1 << 20
    linearity((mib // 8, 10 * mib // 8) if args.quick else (mib, 10 * mib))


if __name__ == "__main__":
    main()
