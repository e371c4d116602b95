"""What seeing a server costs: the same declared protocol with nothing observing it, with
``metrics`` counting, and with ``tracing`` writing every line (to a logger that drops
them), in process.

Two loads: memcached's ``set`` in miniature (two state changes a request, from
``bench_switching.py``) and the upload example's ``GET`` (a self-loop, which observed
connections run without its compiled shortcut). Median of the rounds, ns per request.

    python bench/bench_tracing.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_switching import Declared, _chunks

from statewire import metrics, tracing
from statewire.testing.memory import StringTransport

ROOT = Path(__file__).resolve().parent.parent


def _upload_factory() -> object:
    spec = importlib.util.spec_from_file_location("upload_bench", ROOT / "examples/upload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.UploadFactory()


def _time(make: Callable[[], object], chunks: list[bytes]) -> float:
    protocol = make()
    protocol.makeConnection(StringTransport())  # type: ignore[attr-defined]
    start = time.perf_counter()
    for chunk in chunks:
        protocol.dataReceived(chunk)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    quiet = logging.getLogger("statewire.trace.bench")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    quiet.setLevel(logging.INFO)
    upload = _upload_factory()

    def declared() -> object:
        protocol = Declared()
        protocol.values = {}
        return protocol

    def uploading() -> object:
        protocol = upload.buildProtocol(None)  # type: ignore[attr-defined]
        upload.files[b"f"] = b"x"  # type: ignore[attr-defined]
        return protocol

    loads = {
        "set + block (2 state changes)": (
            declared,
            _chunks((b"set key 16\r\n" + b"b" * 16 + b"\r\n") * args.requests),
        ),
        "GET (a self-loop)": (
            uploading,
            _chunks(b"USER a\r\n" + b"GET f\r\n" * args.requests),
        ),
    }
    modes: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "nothing observing": (lambda: None, lambda: None),
        "metrics counting": (metrics.enable, metrics.disable),
        "tracing every line": (
            lambda: tracing.enable(quiet, rate=1e12),
            tracing.disable,
        ),
    }
    print(f"{args.requests} requests in 64 KiB reads, median of {args.rounds} (ns/request)")
    for load, (make, chunks) in loads.items():
        figures = {}
        for mode, (on, off) in modes.items():
            times = []
            for _ in range(args.rounds):
                on()
                try:
                    times.append(_time(make, chunks))
                finally:
                    off()
            figures[mode] = statistics.median(times) * 1e9 / args.requests
        base = figures["nothing observing"]
        print(f"{load}:")
        for mode, ns in figures.items():
            print(f"  {mode:<20} {ns:8.0f}  ({ns / base:.2f}x)")


if __name__ == "__main__":
    main()
