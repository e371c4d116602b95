"""The rows ``run.py`` takes from the benchmarks of the real protocols (memcached, Redis,
HTTP, SMTP, the PROXY header): each reads the summary lines its benchmark prints, and a
benchmark whose lines changed adds no row rather than a wrong one."""

from __future__ import annotations

import re

Row = tuple[str, str, str, str, str, str]  # section, case, statewire, peer, ratio, target
SECTION = "real protocols"

MEMCACHE = re.compile(r"^statewire / (.+): get ([\d.]+)x\s+set ([\d.]+)x$")
#: ``statewire asyncio / twisted at -P 16: geomean 0.82x (>=3x); PING_INLINE ...``
RESP = re.compile(r"^statewire (\w+) / (.+?) at -P (\d+): geomean ([\d.]+)x \((.*?)\);")


def memcache(output: str) -> list[Row]:
    rows: list[Row] = []
    for text in output.splitlines():
        if match := MEMCACHE.match(text):
            target = ">=3x" if match[1] == "twisted" else ">=1x" if match[1] == "asyncio" else "-"
            for load, ratio in (("get", match[2]), ("set", match[3])):
                rows.append(
                    (SECTION, f"memcached pipelined {load}", "", match[1], f"{ratio}x", target)
                )
    return rows


def resp(output: str) -> list[Row]:
    """redis-benchmark's geometric mean over its tests, per loop, peer and pipeline."""
    rows: list[Row] = []
    for text in output.splitlines():
        if match := RESP.match(text):
            loop, peer, pipeline, ratio, target = match.groups()
            case = f"Redis, redis-benchmark -P {pipeline} geomean ({loop})"
            target = target.split(" (")[0].split(" at ")[0]  # ">=1x (floor 0.8x)": ">=1x"
            rows.append((SECTION, case, "", peer, f"{ratio}x", target))
    return rows
