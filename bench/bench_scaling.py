"""Growing frame sizes: lines and u32 length-prefixed frames of 1 KiB to 1 MiB, the same
total bytes at every size, fed in 64 KiB reads, each frame to a counting callback; time per
byte should stay roughly constant (linear in the frame size). statewire's framers against
Twisted's ``LineOnlyReceiver`` and ``Int32StringReceiver`` (limits raised to fit),
alternated, median of the rounds.

    python bench/bench_scaling.py [--total-mib 16] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 MiB per size, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.total_mib, args.rounds = 4, 2
    total = args.total_mib << 20
    print(
        f"growing frame sizes, {args.total_mib} MiB per size in {CHUNK // 1024} KiB reads, "
        f"{args.rounds} rounds, median ns/byte"
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
            for _ in range(args.rounds):
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
