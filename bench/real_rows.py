"""The rows ``run.py`` takes from the benchmarks of the real protocols (memcached, Redis,
HTTP, HTTPS, SMTP, the PROXY header): each reads the summary lines its benchmark prints, and a
benchmark whose lines changed adds no row rather than a wrong one. HTTP and SMTP run in
their one-round ``--quick`` form there (a round is wrk's or the client's few seconds a
server and load): their own scripts, run alone, give the figures over more rounds."""

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


#: ``statewire / h11: 1.77x (CPU 1.79x)  2.22x (CPU 2.20x)  0.47x (CPU 0.46x)  target >= 2x``
#: (and ``asgi statewire uvloop / uvicorn httptools uvloop: ...``): one ratio per load
HTTP = re.compile(r"^(asgi )?statewire([ -]uvloop)? / (.+?): (.*?)\s+target (.+)$")
HTTP_RATIO = re.compile(r"([\d.]+)x \(CPU [\d.]+x\)")
#: the loads when the output names none (its ``server`` header line names them)
HTTP_LOADS = ("GET keep-alive", "GET pipelined x16", "POST 1 KiB", "POST 1024 KiB")
#: the loads the issue's targets are for: the first three (not the large POST after them)
HTTP_JUDGED = 3
#: ``statewire / twisted: 1 conn 1.51x (CPU 1.63x)  50 conns 1.66x (CPU 1.69x)  target >= 2x``
SMTP = re.compile(
    r"^statewire([ -]uvloop)? / (\S+): (\d+) conns? ([\d.]+)x \(CPU [\d.]+x\)\s+"
    r"(\d+) conns? ([\d.]+)x \(CPU [\d.]+x\)\s+target (.+)$"
)
#: ``floor: api floor / httptools: 0.69x  0.28x  0.68x  (...)``: the least server offering
#: issue 17's handler API (``http_floor.py``) against httptools, per load
HTTP_FLOOR = re.compile(r"^floor: (api floor(?: statewire)?) / httptools: ((?:[\d.]+x\s+)+)")
#: ``floor: api floor statewire / twisted: 1 conn 1.91x  50 conns 4.28x  (...)``
SMTP_FLOOR = re.compile(
    r"^floor: (api floor(?: statewire| uvloop)?) / (\S+): "
    r"(\d+) conns? ([\d.]+)x\s+(\d+) conns? ([\d.]+)x"
)
#: ``v1      5944.1       +3695   6119.1 [...]``: the added cost of a header, in process
PROXY = re.compile(r"^(v1|v2)\s+[\d.]+\s+\+(\d+)\s")


def http(output: str) -> list[Row]:
    """wrk's requests per second, statewire's over the peer's, per load."""
    rows: list[Row] = []
    loads: tuple[str, ...] = HTTP_LOADS
    for text in output.splitlines():
        if text.startswith("server "):  # the table's header: the loads' names
            loads = tuple(re.split(r"\s{2,}", text.strip())[1:])
        elif match := HTTP.match(text):
            asgi, uvloop, peer, cells, target = match.groups()
            ratios = HTTP_RATIO.findall(cells)
            what = ("ASGI " if asgi else "HTTP ") + ("(uvloop)" if uvloop else "(asyncio)")
            target = "-" if target == "limit" else target.replace(" ", "")
            for index, (load, ratio) in enumerate(zip(loads, ratios, strict=True)):
                judged = target if index < HTTP_JUDGED else "-"
                rows.append((SECTION, f"{what}, {load}", "", peer, f"{ratio}x", judged))
        elif match := HTTP_FLOOR.match(text):
            # not statewire: what the target allows any server offering the handler API
            where = "statewire's transport" if match[1].endswith("statewire") else "asyncio"
            for load, ratio in zip(loads, match[2].split(), strict=False):
                case = f"HTTP API floor ({where}), {load}"
                rows.append((SECTION, case, "", "httptools", ratio, "-"))
    return rows


def smtp(output: str) -> list[Row]:
    """Messages accepted per second, statewire's over the peer's."""
    rows: list[Row] = []
    for text in output.splitlines():
        if match := SMTP.match(text):
            uvloop, peer, one, first, many, second, target = match.groups()
            loop = "uvloop" if uvloop else "asyncio"
            for conns, ratio in ((one, first), (many, second)):
                case = f"SMTP messages, {conns} conn{'' if conns == '1' else 's'} ({loop})"
                limit = "-" if target == "limit" else target.replace(" ", "")
                rows.append((SECTION, case, "", peer, f"{ratio}x", limit))
        elif match := SMTP_FLOOR.match(text):
            # not statewire: what the targets allow any server offering the handler interface
            floor, peer, one, first, many, second = match.groups()
            where = "statewire's transport" if floor.endswith("statewire") else "asyncio"
            where = "uvloop" if floor.endswith("uvloop") else where
            for conns, ratio in ((one, first), (many, second)):
                case = f"SMTP API floor ({where}), {conns} conn{'' if conns == '1' else 's'}"
                rows.append((SECTION, case, "", peer, f"{ratio}x", "-"))
    return rows


#: ``websocket: 10 conn: asgi statewire uvloop / uvicorn websockets uvloop: 2.43x``
WEBSOCKET = re.compile(r"^websocket: (\d+) conn: asgi statewire( uvloop)? / (.+): ([\d.]+)x$")


def websocket(output: str) -> list[Row]:
    """WebSocket echo through ASGI: messages per second, ``asgi(app)``'s over uvicorn's."""
    rows: list[Row] = []
    for text in output.splitlines():
        if match := WEBSOCKET.match(text):
            conns, uvloop, peer, ratio = match.groups()
            loop = "uvloop" if uvloop else "asyncio"
            case = f"ASGI WebSocket echo, {conns} conn{'' if conns == '1' else 's'} ({loop})"
            rows.append((SECTION, case, "", peer, f"{ratio}x", "-"))
    return rows


#: ``tls: GET keep-alive: statewire uvloop / httptools uvloop: 0.48x``
TLS = re.compile(r"^tls: (.+?): statewire( uvloop)? / (.+): ([\d.]+)x$")


def tls(output: str) -> list[Row]:
    """HTTPS: wrk's requests per second, statewire's over the peer's on the same loop."""
    rows: list[Row] = []
    for text in output.splitlines():
        if match := TLS.match(text):
            load, uvloop, peer, ratio = match.groups()
            case = f"HTTPS ({'uvloop' if uvloop else 'asyncio'}), {load}"
            rows.append((SECTION, case, "", peer.removesuffix(" uvloop"), f"{ratio}x", "-"))
    return rows


def proxy(output: str) -> list[Row]:
    """What a PROXY header adds to a connection, in process (target: under 2 µs)."""
    rows: list[Row] = []
    for text in output.splitlines():
        if match := PROXY.match(text):
            version, added = match.groups()
            case = f"PROXY {version} header, added a connection"
            rows.append((SECTION, case, f"+{added} ns", "no header", "", "<2000 ns"))
    return rows
