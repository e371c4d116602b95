"""The declared RESP client against redis-py on the same ``redis-server``: pipelined SET
and GET (batches of ``--pipeline`` requests on one connection: ours ``gather``s the calls,
redis-py runs a non-transactional ``pipeline()``), and one request at a time (round trips).
redis-py runs both ways, ``redis.asyncio`` and the blocking ``redis.Redis``, with hiredis
when it is installed (said in the header). Cases are interleaved per round, the median of
the rounds kept; requests per second, and ours over each peer (above 1: ours is faster).

    python bench/bench_resp_client.py [--requests 20000] [--round-trips 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
from collections.abc import Callable

import redis
import redis.asyncio as aredis
from redis.utils import HIREDIS_AVAILABLE

from statewire._reactor import Reactor
from statewire.protocols.resp_client import RespClient
from statewire.testing.differential import HOST, server

#: a case: (redis-server port, requests, batch size) -> seconds
Case = Callable[[int, int, int], float]
VALUE = b"v" * 16


def _keys(count: int) -> list[bytes]:
    return [b"key:%d" % (i % 1000) for i in range(count)]


def ours(kind: str) -> Case:
    def run(port: int, requests: int, batch: int) -> float:
        async def main() -> float:
            reactor = Reactor()
            try:
                client = await RespClient.connect(reactor, HOST, port, timeout=5)
                keys = _keys(requests)
                start = time.perf_counter()
                if kind == "rtt":
                    for key in keys:
                        await client.get(key)
                else:
                    for first in range(0, requests, batch):
                        chunk = keys[first : first + batch]
                        if kind == "set":
                            await asyncio.gather(*[client.call(b"SET", k, VALUE) for k in chunk])
                        else:
                            await asyncio.gather(*[client.call(b"GET", k) for k in chunk])
                elapsed = time.perf_counter() - start
                await client.close()
                return elapsed
            finally:
                await reactor.shutdown()

        return asyncio.run(main())

    return run


def redis_asyncio(kind: str) -> Case:
    def run(port: int, requests: int, batch: int) -> float:
        async def main() -> float:
            client = aredis.Redis(host=HOST, port=port)
            keys = _keys(requests)
            await client.ping()
            start = time.perf_counter()
            if kind == "rtt":
                for key in keys:
                    await client.get(key)
            else:
                for first in range(0, requests, batch):
                    pipe = client.pipeline(transaction=False)
                    for key in keys[first : first + batch]:
                        pipe.set(key, VALUE) if kind == "set" else pipe.get(key)
                    await pipe.execute()
            elapsed = time.perf_counter() - start
            await client.aclose()
            return elapsed

        return asyncio.run(main())

    return run


def redis_blocking(kind: str) -> Case:
    def run(port: int, requests: int, batch: int) -> float:
        client = redis.Redis(host=HOST, port=port)
        keys = _keys(requests)
        client.ping()
        start = time.perf_counter()
        if kind == "rtt":
            for key in keys:
                client.get(key)
        else:
            for first in range(0, requests, batch):
                pipe = client.pipeline(transaction=False)
                for key in keys[first : first + batch]:
                    pipe.set(key, VALUE) if kind == "set" else pipe.get(key)
                pipe.execute()
        elapsed = time.perf_counter() - start
        client.close()
        return elapsed

    return run


CLIENTS = {"statewire": ours, "redis.asyncio": redis_asyncio, "redis (blocking)": redis_blocking}
KINDS = {"set": "pipelined SET", "get": "pipelined GET", "rtt": "GET one at a time"}


def measure(port: int, requests: int, trips: int, batch: int, rounds: int) -> dict[str, dict]:
    times: dict[str, dict[str, list[float]]] = {k: {c: [] for c in CLIENTS} for k in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            count = trips if kind == "rtt" else requests
            for name, make in CLIENTS.items():  # interleaved: drift hits all alike
                times[kind][name].append(make(kind)(port, count, batch))
    return {
        kind: {
            name: (trips if kind == "rtt" else requests) / statistics.median(t)
            for name, t in by_client.items()
        }
        for kind, by_client in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per pipelined case")
    parser.add_argument("--round-trips", type=int, default=3_000, help="one at a time")
    parser.add_argument("--pipeline", type=int, default=100, help="requests per batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed")
    command = [executable, "--save", "", "--appendonly", "no", "--port", "{port}"]
    with server([*command, "--bind", HOST]) as port:
        results = measure(port, args.requests, args.round_trips, args.pipeline, args.rounds)
    parser_name = "hiredis" if HIREDIS_AVAILABLE else "pure-Python parser"
    print(
        f"RESP clients on one redis-server: redis-py {redis.__version__} ({parser_name}); "
        f"{args.requests} pipelined requests in batches of {args.pipeline}, "
        f"{args.round_trips} round trips; median of {args.rounds} rounds"
    )
    print(f"{'case':<20}" + "".join(f"{name:>18}" for name in CLIENTS) + "   ours / peers")
    for kind, label in KINDS.items():
        rates = results[kind]
        mine = rates["statewire"]
        ratios = ", ".join(
            f"{mine / rate:.2f}x {name}" for name, rate in rates.items() if name != "statewire"
        )
        cells = "".join(f"{rate:>14,.0f} r/s" for rate in rates.values())
        print(f"{label:<20}{cells}   {ratios}")


if __name__ == "__main__":
    main()
