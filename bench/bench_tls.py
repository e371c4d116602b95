"""HTTPS: statewire's HTTP/1.1 server on a TLS port against its peers over TLS, one run.

Each server runs in its own process on a free loopback port with a certificate made for
the run, and answers ``bench_http.py``'s routes (``GET /``, ``POST /echo``):

* ``statewire``: ``examples/httpd.py:factory`` on ``statewire serve --listen ssl:...``
  (TLS on statewire's socket transport); ``--uvloop`` adds a row on uvloop;
* ``statewire, loop TLS``: the same factory on a ``listenSSL`` port with
  ``Reactor.native_transports``: asyncio's own TLS transport (how TLS ports were served
  until 2026-12-03), and on uvloop with ``--uvloop`` (uvloop's TLS);
* ``httptools``, ``h11``: ``bench_http.py``'s hand-written asyncio protocols on
  ``loop.create_server(ssl=...)`` (asyncio's TLS transport; ``httptools uvloop`` on uvloop's
  with ``--uvloop``);
* ``twisted``: ``bench_http.py``'s ``twisted.web`` site on ``listenSSL`` (pyOpenSSL).

Two loads, ``wrk -t1 -c50`` over kept-alive TLS connections (the handshakes happen once,
before the load's first second is over): ``GET /`` one request in flight per connection,
and a ``POST /echo`` of 1 KiB. Rounds alternate the servers; the medians are printed, then
statewire's ratio to each peer on the same loop (``tls: LOAD: statewire / PEER: R x``,
the lines ``run.py`` reads; above 1, statewire is faster). No targets: issue 17 sets
its targets for plain HTTP; this says what TLS changes.

    python bench/bench_tls.py [--seconds 3] [--rounds 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import H11Server, HttptoolsServer, Load, run_wrk, serve_twisted
from bench_resp import HOST, free_port, served

BENCH = Path(__file__).resolve().parent


def certificate(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, written in ``folder``."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from runtime_helpers import self_signed_certificate  # type: ignore[import-not-found]

    made: tuple[str, str] = self_signed_certificate(folder)
    return made


def context(cert: str, key: str) -> ssl.SSLContext:
    made = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    made.load_cert_chain(cert, key)
    return made


def run_loop(main: Any, uvloop: bool) -> None:
    if uvloop:
        import uvloop as _uvloop

        _uvloop.run(main())
    else:
        asyncio.run(main())


def serve(name: str, port: int, cert: str, key: str) -> None:
    """Serve ``name`` on ``port`` (in this process, until it is terminated)."""
    uvloop = name.endswith("uvloop")
    if name.startswith("twisted"):
        from twisted.internet.ssl import DefaultOpenSSLContextFactory

        serve_twisted(port, DefaultOpenSSLContextFactory(key, cert))  # type: ignore[no-untyped-call]
        return
    if name.startswith("statewire, loop TLS"):
        sys.path.insert(0, str(BENCH.parent / "examples"))
        import httpd  # type: ignore[import-not-found]

        from statewire._reactor import Reactor

        async def native() -> None:
            reactor = Reactor()
            reactor.native_transports = True
            listening = reactor.listenSSL(port, httpd.factory, context(cert, key), interface=HOST)
            await listening.ready
            await asyncio.Event().wait()

        run_loop(native, uvloop)
        return
    kind = {"httptools": HttptoolsServer, "h11": H11Server}[name.split()[0]]

    async def peer() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(kind, HOST, port, ssl=context(cert, key))
        async with server:
            await server.serve_forever()

    run_loop(peer, uvloop)


def command(name: str, port: int, cert: str, key: str) -> list[str]:
    if name.startswith("statewire") and "loop TLS" not in name:
        where = f"ssl:{port}:privateKey={key}:certKey={cert}:interface={HOST}"
        serve_it = [sys.executable, "-m", "statewire", "serve", "examples/httpd.py:factory"]
        return [*serve_it, "--listen", where, *(["--uvloop"] * name.endswith("uvloop"))]
    return [sys.executable, str(BENCH / "bench_tls.py"), "serve", name, str(port), cert, key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per load and server")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--uvloop", action="store_true", help="add the uvloop rows")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_tls.py needs wrk (apt-get install wrk)")
    names = ["statewire", "statewire, loop TLS", "httptools", "h11", "twisted"]
    if args.uvloop:
        names += ["statewire uvloop", "statewire, loop TLS uvloop", "httptools uvloop"]
    loads = [
        Load("GET keep-alive", "GET", "/", b"", 1),
        Load("POST 1 KiB", "POST", "/echo", b"x" * 1024, 1),
    ]
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        cert, key = certificate(Path(folder))
        for round_ in range(args.rounds):
            for name in names:
                port = free_port()
                with served(command(name, port, cert, key), port):
                    for load in loads:
                        rate = run_wrk(port, load, 50, args.seconds, folder, name, scheme="https")
                        rates.setdefault((name, load.name), []).append(rate)
            print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    for load in loads:
        print(f"\n{load.name} over TLS, wrk -t1 -c50, {args.seconds:g} s, medians:")
        median = {name: statistics.median(rates[name, load.name]) for name in names}
        for name in names:
            print(f"  {name:28} {median[name]:>10,.0f} requests/s")
        for ours in [n for n in names if n in ("statewire", "statewire uvloop")]:
            same_loop = [n for n in names if n.endswith("uvloop") == ours.endswith("uvloop")]
            for peer in [n for n in same_loop if n != ours]:
                ratio = median[ours] / median[peer]
                print(f"tls: {load.name}: {ours} / {peer}: {ratio:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        main()
