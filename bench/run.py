"""Run every benchmark and print one table of ratios (statewire against its peer).

Runs ``bench_framing.py``, ``bench_protocols.py``, ``bench_switching.py``,
``bench_scaling.py``, ``bench_echo.py`` (line echo, request/response, accept rate, body
memory), the real protocols' (``bench_memcache.py``, ``bench_resp.py``, ``bench_http.py``,
``bench_tls.py``, ``bench_websocket.py`` and ``bench_smtp.py`` in their one-round forms,
``bench_proxy.py``: their rows are read by ``real_rows.py``) and ``bench_diagram.py``, each
in its own process, prints their output, then the combined table; writes
``bench/RESULTS.md`` (machine, versions, date, command, table, full output) and
``bench/results.png`` (the end-to-end figures: statewire on asyncio and uvloop against
Twisted and the asyncio limit).

    python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata

import real_rows

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVERS = ("statewire asyncio", "statewire uvloop", "Twisted epoll", "asyncio hand-written")

ROW = re.compile(
    r"^(?P<case>\S.*?)\s{2,}(?P<ours>[\d.]+) \[[\d.]+-[\d.]+\]\s+(?P<peer>\w+)\s+"
    r"(?P<theirs>[\d.]+) \[[\d.]+-[\d.]+\]\s+(?P<ratio>[\d.]+)x(?:\s+(?P<target>\S+))?$"
)
SWITCH = re.compile(r"^\s*(\d+) frames: .*ratio ([\d.]+)x$")
LINEAR = re.compile(r"^time ratio ([\d.]+) for size ratio (\d+)")
SCALE = re.compile(r"^(line LF|u32 prefix)\s+(\d+) KiB\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x$")
PER_BYTE = re.compile(r"^(.+): ns/byte at 1 MiB / at 1 KiB = ([\d.]+)")
DIAGRAM = re.compile(r"^(\d+) states, (.+): ([\d.]+) ms$")
SWITCHED = re.compile(r"^(statewire|Twisted)[^:]*:\s+(\d+) ns/request$")

Row = tuple[str, str, str, str, str, str]  # section, case, statewire, peer, ratio, target


def run(script: str, *args: str) -> str:
    command = [sys.executable, os.path.join(HERE, script), *args]
    print(f"\n$ python bench/{script} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    print(done.stdout, end="")
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"{script} failed ({done.returncode})")
    print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return done.stdout


def parse_micro(section: str, unit: str, output: str, rows: list[Row]) -> None:
    what = "linearity"
    for text in output.splitlines():
        if text.startswith("switching grammar"):
            what = "linearity, switching"
        elif text.startswith("one line fed 1 byte"):
            what = "linearity, 1-byte reads"
        if match := ROW.match(text):
            target = match["target"] or "-"
            rows.append(
                (
                    section,
                    match["case"],
                    f"{match['ours']} {unit}",
                    f"{match['peer']} {match['theirs']} {unit}",
                    f"{match['ratio']}x",
                    target,
                )
            )
        elif match := SWITCH.match(text):
            rows.append(
                (
                    section,
                    f"switch grammar, {match[1]} frames",
                    "",
                    "LineReceiver",
                    match[2] + "x",
                    "-",
                )
            )
        elif match := LINEAR.match(text):
            rows.append(
                (section, f"{what} x{match[2]}", f"time x{match[1]}", "", "", f"x{match[2]}")
            )


def parse_switching(output: str, rows: list[Row]) -> None:
    found = dict(match.groups() for match in map(SWITCHED.match, output.splitlines()) if match)
    if len(found) == 2:
        ours, theirs = int(found["statewire"]), int(found["Twisted"])
        rows.append(
            (
                "protocols",
                "declared, a state change every frame (set + block)",
                f"{ours} ns/req",
                f"LineReceiver raw mode {theirs} ns/req",
                f"{theirs / ours:.2f}x",
                ">=1.5x",
            )
        )


def parse_scaling(output: str, rows: list[Row]) -> None:
    for text in output.splitlines():
        if match := SCALE.match(text):
            rows.append(
                (
                    "scaling",
                    f"{match[1]} {match[2]} KiB frames",
                    f"{match[3]} ns/B",
                    f"Twisted {match[4]} ns/B",
                    f"{match[5]}x",
                    "-",
                )
            )
        elif match := PER_BYTE.match(text):
            rows.append(("scaling", f"{match[1]} ns/byte 1 MiB vs 1 KiB", match[2], "", "", "~1"))


def parse_echo(results: dict, rows: list[Row]) -> None:
    def add(case: str, rates: dict[str, float], unit: str) -> None:
        twisted = rates["Twisted epoll"]
        limit = rates.get("asyncio hand-written") or rates.get("asyncio write-per-read")
        for name in ("statewire asyncio", "statewire uvloop"):
            note = f" (statewire {rates[name] / limit:.2f} of limit)" if limit else ""
            rows.append(
                (
                    "end to end",
                    f"{case} ({name.split()[1]})",
                    f"{rates[name]:,.0f} {unit}",
                    f"Twisted {twisted:,.0f}{note}",
                    f"{rates[name] / twisted:.2f}x",
                    "-",
                )
            )

    if "echo" in results:
        add("line echo, 4 conns", results["echo"], "lines/s")
    for scenario, rates in results.get("request_response", {}).items():
        add(f"GET/VALUE {scenario}", rates, "req/s")
    if "accepts" in results:
        add("accept cycles", results["accepts"], "conn/s")
    idle = results.get("idle_bytes", {})
    for name in ("statewire asyncio", "statewire uvloop"):
        if name in idle:
            twisted = idle["Twisted epoll"]
            rows.append(
                (
                    "memory",
                    f"idle connection ({name.split()[1]})",
                    f"{idle[name]:,.0f} B",
                    f"Twisted {twisted:,.0f} B",
                    f"{twisted / idle[name]:.2f}x",
                    "-",
                )
            )
    body = results.get("body_memory_kib", {})
    for name in ("statewire asyncio", "statewire uvloop"):
        if name in body:
            rows.append(
                (
                    "memory",
                    f"100 MiB body, peak RSS growth ({name.split()[1]})",
                    f"{body[name]['peak']:,} KiB",
                    f"Twisted {body['Twisted epoll']['peak']:,} KiB",
                    "",
                    "bounded",
                )
            )


def parse_diagram(output: str, rows: list[Row]) -> None:
    for text in output.splitlines():
        if match := DIAGRAM.match(text):
            rows.append(
                ("diagram", f"{match[1]} states, {match[2]}", f"{match[3]} ms", "", "", "-")
            )


HEADER = ("section", "case", "statewire", "peer", "ratio", "target")


def table(rows: list[Row]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [HEADER, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(out)


def machine() -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for text in info:
                if text.startswith("model name"):
                    cpu = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for package in ("statewire", "Twisted", "automat", "construct", "uvloop", "matplotlib"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    try:
        from statewire import framing
        from statewire.framing import _accel, _compiled

        accel = "on" if _accel.available() else "off"
        compiled = "on" if framing.compiled() else f"off ({_compiled.reason})"
    except ImportError:
        accel = compiled = "unknown"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- Versions: {', '.join(versions)}",
        f"- statewire C accelerator: {accel}",
        f"- statewire framer compiled by mypyc: {compiled}",
    ]


def chart(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    panels = []
    if "echo" in results:
        echo = dict(results["echo"])
        echo["asyncio hand-written"] = echo.pop("asyncio write-per-read")
        panels.append(("line echo, 4 pipelined conns", echo, "lines/s"))
    for scenario, rates in results.get("request_response", {}).items():
        panels.append((f"GET/VALUE, {scenario}", rates, "requests/s"))
    if "accepts" in results:
        panels.append(("connect + GET + close cycles", results["accepts"], "connections/s"))
    columns = 3
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    colours = ("#1f77b4", "#6baed6", "#d62728", "#7f7f7f")
    labels = ("statewire\nasyncio", "statewire\nuvloop", "Twisted\nepoll", "asyncio\nlimit")
    for ax, (title, rates, unit) in zip(axes.flat, panels, strict=False):
        values = [rates[name] for name in SERVERS]
        bars = ax.bar(labels, values, color=colours)
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(
                f"{value / 1000:,.0f}k" if value >= 10_000 else f"{value:,.0f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle("statewire end to end over loopback (higher is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = parser.parse_args()
    began = time.perf_counter()
    quick = ["--quick"] if args.quick else []
    rows: list[Row] = []
    outputs = []
    framing = run(
        "bench_framing.py",
        *(quick + (["--frames", "50000", "--rounds", "3"] if args.quick else [])),
    )
    outputs.append(("bench_framing.py", framing))
    parse_micro("framing", "ns/frame", framing, rows)
    protocols = run("bench_protocols.py", *quick)
    outputs.append(("bench_protocols.py", protocols))
    parse_micro("protocols", "ns/frame", protocols, rows)
    switching = run("bench_switching.py", *(["--requests", "10000"] if args.quick else []))
    outputs.append(("bench_switching.py", switching))
    parse_switching(switching, rows)
    scaling = run("bench_scaling.py", *quick)
    outputs.append(("bench_scaling.py", scaling))
    parse_scaling(scaling, rows)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "echo.json")
        echo_args = ["--json", path, *quick]
        if args.quick:
            echo_args += ["--rounds", "2"]
        echo = run("bench_echo.py", *echo_args)
        with open(path) as source:
            results = json.load(source)
    outputs.append(("bench_echo.py", echo))
    parse_echo(results, rows)
    memcache = run("bench_memcache.py", *(["--seconds", "1"] if args.quick else []))
    outputs.append(("bench_memcache.py", memcache))
    rows += real_rows.memcache(memcache)
    resp = run("bench_resp.py", *quick)
    outputs.append(("bench_resp.py", resp))
    rows += real_rows.resp(resp)
    http = run("bench_http.py", "--quick")  # (one round of 1 s a load: wrk's)
    outputs.append(("bench_http.py", http))
    rows += real_rows.http(http)
    tls = run("bench_tls.py", "--seconds", "1", "--rounds", "1", "--uvloop")
    outputs.append(("bench_tls.py", tls))
    rows += real_rows.tls(tls)
    websocket = run("bench_websocket.py", "--quick")
    outputs.append(("bench_websocket.py", websocket))
    rows += real_rows.websocket(websocket)
    smtp = run("bench_smtp.py", "--quick", "--big-mib", "0")
    outputs.append(("bench_smtp.py", smtp))
    rows += real_rows.smtp(smtp)
    proxy = run("bench_proxy.py", *quick)
    outputs.append(("bench_proxy.py", proxy))
    rows += real_rows.proxy(proxy)
    diagram = run("bench_diagram.py")
    outputs.append(("bench_diagram.py", diagram))
    parse_diagram(diagram, rows)
    elapsed = time.perf_counter() - began
    print("\nstatewire against its peer (ratio above 1: statewire better)\n")
    print(table(rows))
    png = os.path.join(HERE, "results.png")
    chart(results, png)
    command = "python bench/run.py" + (" --quick" if args.quick else "")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [
        "# statewire benchmark results",
        "",
        f"- Date: {now}",
        f"- Command: `{command}` ({elapsed:.0f} s)",
        *machine(),
        "",
        "Ratio: the peer's time over statewire's (throughput: statewire's over the peer's);",
        "above 1, statewire is better. End-to-end rows give statewire's share of the hand-",
        "written asyncio limit too. Chart: `bench/results.png`.",
        "",
        markdown(rows),
        "",
        "![end-to-end figures](results.png)",
        "",
        "## Full output",
    ]
    for script, output in outputs:
        report += ["", f"### {script}", "", "```", output.rstrip(), "```"]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as out:
        out.write("\n".join(report) + "\n")
    print(f"\nwrote bench/RESULTS.md and bench/results.png ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
