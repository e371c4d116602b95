"""Growing frame sizes: lines and u32 length-prefixed frames of 1 KiB to 1 MiB, the same
total bytes at every size, fed in 64 KiB reads, each frame to a counting callback; time per
byte should stay roughly constant (linear in the frame size). statewire's framers against
Twisted's ``LineOnlyReceiver`` and ``Int32StringReceiver`` (limits raised to fit),
alternated, median of the rounds.

Then the generic path (any construct grammar) under the worst chunking: one frame of a
scanning grammar, a line nested in a ``Struct`` and a ``CString``, fed 1 byte at a time at
two sizes ten times apart. For the nested line the time ratio should be about the size
ratio. construct's own ``CString`` parse is quadratic (it grows its result a byte at a
time), so for it the figure to watch is the framer's cost over one parse of the whole
frame, which should stay constant; its sizes are smaller to finish in reasonable time.

    python bench/bench_scaling.py [--total-mib 16] [--rounds 3] [--quick]
    python bench/bench_scaling.py --dribble-only [--line-kib 1024] [--cstring-kib 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from construct import CString, Struct
from twisted.protocols import basic

from grammars import line, prefixed
from statewire.framing import Framer

CHUNK = 64 * 1024
SIZES = (1 << 10, 8 << 10, 64 << 10, 512 << 10, 1 << 20)


class _Transport:
    disconnecting = False

    def loseConnection(self) -> None:
        raise AssertionError("the benchmark input is well formed")


def _ours(grammar: object) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        count = 0

        def on_frame(frame: bytes) -> None:
            nonlocal count
            count += 1

        feed = Framer(grammar, on_frame).feed
        for chunk in chunks:
            feed(chunk)
        return count

    return run


def _theirs(cls: type, method: str, limit: int) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        count = 0

        def on_frame(self: object, frame: bytes) -> None:
            nonlocal count
            count += 1

        receiver = type("Receiver", (cls,), {method: on_frame, "MAX_LENGTH": limit})()
        receiver.makeConnection(_Transport())
        for chunk in chunks:
            receiver.dataReceived(chunk)
        return count

    return run


def _dribble(grammar: object, wire: bytes) -> float:
    """Seconds to frame ``wire``, one frame, fed 1 byte a read."""
    frames: list[object] = []
    feed = Framer(grammar, frames.append, max_length=len(wire)).feed
    start = time.perf_counter()
    for i in range(len(wire)):
        feed(wire[i : i + 1])
    elapsed = time.perf_counter() - start
    if len(frames) != 1:
        raise AssertionError(f"{len(frames)} frames, expected 1")
    return elapsed


def dribbled(line_size: int, cstring_size: int) -> None:
    """The generic path's linearity figure (see the module documentation)."""
    print("\ngeneric path, one frame fed 1 byte at a time, sizes 10x apart")
    print(f"{'grammar':<14}{'size':>10}{'seconds':>10}{'ns/byte':>10}{'one parse':>11}")
    nested = Struct("text" / line(b"\n", max_length=1 << 30))
    cases = (
        ("Struct(line)", nested, b"\n", line_size),  # line's own parse is linear
        ("CString", CString("ascii"), b"\0", cstring_size),
    )
    for name, grammar, end, size in cases:
        times = []
        for n in (size, 10 * size):
            wire = b"x" * n + end
            elapsed = _dribble(grammar, wire)
            start = time.perf_counter()
            grammar.parse(wire)
            once = time.perf_counter() - start
            times.append(elapsed)
            print(
                f"{name:<14}{n // 1024:>6} KiB{elapsed:>10.2f}{elapsed / n * 1e9:>10.0f}"
                f"{once:>10.2f}s"
            )
        print(f"{name}: time ratio {times[1] / times[0]:.1f} for size ratio 10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 MiB per size, 2 rounds")
    parser.add_argument("--dribble-only", action="store_true", help="only the generic path")
    parser.add_argument("--line-kib", type=int, default=1024, help="nested line, smaller size")
    parser.add_argument("--cstring-kib", type=int, default=16, help="CString, smaller size")
    args = parser.parse_args()
    if args.quick:
        args.total_mib, args.rounds = 4, 2
        args.line_kib, args.cstring_kib = args.line_kib // 8, args.cstring_kib // 4
    if not args.dribble_only:
        growing(args.total_mib << 20, args.rounds)
    dribbled(args.line_kib << 10, args.cstring_kib << 10)


def growing(total: int, rounds: int) -> None:
    """statewire's fast paths against Twisted's receivers, frames of growing size."""
    print(
        f"growing frame sizes, {total >> 20} MiB per size in {CHUNK // 1024} KiB reads, "
        f"{rounds} rounds, median ns/byte"
    )
    print(f"{'framing':<10}{'size':>9}{'statewire':>12}{'Twisted':>12}{'ratio':>8}")
    for name, peer, method in (
        ("line LF", basic.LineOnlyReceiver, "lineReceived"),
        ("u32 prefix", basic.Int32StringReceiver, "stringReceived"),
    ):
        first = last = 0.0
        for size in SIZES:
            limit = 2 * size
            if name == "line LF":
                grammar: object = line(b"\n", max_length=limit)
                frame = b"x" * (size - 1) + b"\n"
                peer_cls = type("Lines", (peer,), {"delimiter": b"\n"})
            else:
                grammar = prefixed(4, max_length=limit)
                frame = prefixed(4, max_length=limit).build(b"x" * (size - 4))
                peer_cls = peer
            count = max(1, total // size)
            wire = frame * count
            chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
            runs = (_ours(grammar), _theirs(peer_cls, method, limit))
            samples: tuple[list[float], list[float]] = ([], [])
            for _ in range(rounds):
                for run, out in zip(runs, samples, strict=True):
                    start = time.perf_counter()
                    got = run(chunks)
                    out.append((time.perf_counter() - start) / len(wire) * 1e9)
                    if got != count:
                        raise AssertionError(f"{got} frames, expected {count}")
            ours, theirs = (statistics.median(s) for s in samples)
            first = first or ours
            last = ours
            print(
                f"{name:<10}{size // 1024:>6} KiB{ours:>12.2f}{theirs:>12.2f}"
                f"{theirs / ours:>7.2f}x"
            )
        print(
            f"{name}: ns/byte at 1 MiB / at 1 KiB = {last / first:.2f} "
            "(constant time per byte: about 1)"
        )


if __name__ == "__main__":
    main()
