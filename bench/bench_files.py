"""Files served by an ASGI application: Starlette's ``FileResponse`` on ``asgi(app)``
(which offers the "Path Send" extension: the kernel sends the file) against the same
application on uvicorn (which does not: Starlette reads the file in 64 KiB pieces, each in
a thread, each sent as a body message). Each server in its own process on 127.0.0.1, on
asyncio and on uvloop, loaded by ``wrk -t1 -cN`` (keep-alive ``GET``), in alternated
rounds; prints requests/s, MiB/s, each server's CPU time a request, and the ratios.

    python bench/bench_files.py [--sizes 16K,1M,16M] [--seconds 2] [--rounds 3]
        [--connections 10]

The files are made (random bytes) in a temporary folder named to the servers by
``BENCH_FILES``; they stay in the page cache (what a static-file server usually serves).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import Load, run_wrk
from bench_resp import HOST, cpu_seconds, served

from statewire.testing.differential import free_port

#: the units ``--sizes`` takes
_UNITS = {"K": 1 << 10, "M": 1 << 20}


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    folder = Path(os.environ.get("BENCH_FILES", "."))

    async def one(request: Any) -> FileResponse:
        return FileResponse(folder / request.path_params["name"])

    return Starlette(routes=[Route("/{name}", one)])


def __getattr__(name: str) -> Any:  # (``bench_files:app``, made when a server asks)
    if name == "app":
        return _app()
    raise AttributeError(name)


def command(name: str, port: int) -> list[str]:
    """The command line serving ``name`` (``statewire``/``uvicorn``, `` uvloop``)."""
    uvloop = name.endswith("uvloop")
    if name.startswith("statewire"):
        serve = [sys.executable, "-m", "statewire", "serve", "bench/bench_files.py:app"]
        listen = ["--listen", f"tcp:{port}:interface={HOST}"]
        return [*serve, "--asgi", "--lifespan", "off", *listen, *(["--uvloop"] * uvloop)]
    where = ["--app-dir", "bench", "bench_files:app", "--host", HOST, "--port", str(port)]
    quiet = ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    loop = ["--loop", "uvloop" if uvloop else "asyncio", "--http", "httptools"]
    return [sys.executable, "-m", "uvicorn", *where, *loop, *quiet]


def _size(text: str) -> int:
    unit = _UNITS.get(text[-1:].upper(), 1)
    return int(text[:-1] if unit != 1 else text) * unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16K,1M,16M")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    names = ["statewire", "uvicorn"]
    try:
        import uvloop  # noqa: F401

        names += ["statewire uvloop", "uvicorn uvloop"]
    except ImportError:
        print("uvloop is not installed: the uvloop rows are skipped")
    sizes = [(text, _size(text)) for text in args.sizes.split(",")]
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for text, size in sizes:
            Path(folder, text).write_bytes(os.urandom(size))
        os.environ["BENCH_FILES"] = folder
        for _ in range(args.rounds):
            for name in names:
                port = free_port()
                with served(command(name, port), port) as (_, pid):
                    for text, _size_bytes in sizes:
                        before = cpu_seconds(pid)
                        load = Load(text, "GET", f"/{text}", b"", 1)
                        rate = run_wrk(port, load, args.connections, args.seconds, folder, name)
                        used = cpu_seconds(pid) - before
                        rates.setdefault((name, text), []).append(rate)
                        requests = rate * max(1, round(args.seconds))
                        costs.setdefault((name, text), []).append(used / requests * 1e6)
    print(f"Starlette FileResponse, wrk -t1 -c{args.connections}, medians of {args.rounds}")
    for text, size in sizes:
        for name in names:
            rate = statistics.median(rates[(name, text)])
            cost = statistics.median(costs[(name, text)])
            print(
                f"  {text:>4} {name:<17} {rate:>9,.0f} req/s {rate * size / (1 << 20):>8,.0f} "
                f"MiB/s {cost:>8,.1f} us CPU a request"
            )
        for loop in ("", " uvloop"):
            ours, peer = f"statewire{loop}", f"uvicorn{loop}"
            if (ours, text) in rates and (peer, text) in rates:
                ratio = statistics.median(rates[(ours, text)]) / statistics.median(
                    rates[(peer, text)]
                )
                print(f"  {text:>4} statewire / uvicorn{loop}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
