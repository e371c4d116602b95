"""``statewire diagram``: draw a declared protocol's state diagram, or check a committed
drawing against it (for CI), its edges counted by a running server's metrics
(``--counts``)."""

from __future__ import annotations

import sys


def counts_from(url: str, protocol: type) -> dict[tuple[str, str, str], int]:
    """The transitions per edge a running server's metrics endpoint reports."""
    import urllib.request

    from statewire.metrics import transitions_in

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--counts takes the metrics URL (http://HOST:PORT/metrics), got {url!r}")
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode("utf-8", "replace")
    return transitions_in(text, protocol.__name__)


def diagram(
    target: str, fmt: str | None, output: str | None, check: str | None, counts: str | None = None
) -> int:
    """``statewire diagram``: the exit code (2 for a bad target, 1 for a file that cannot
    be read or written, or a drawing that differs under ``--check``)."""
    from pathlib import Path

    from statewire.diagram import SUFFIXES, DiagramError, protocol_from, render
    from statewire.target import TargetError, TargetRaised

    where = check or output
    if fmt is None:
        fmt = SUFFIXES.get(Path(where).suffix, "dot") if where else "dot"
    try:
        protocol = protocol_from(target)
        try:
            edges = None if counts is None else counts_from(counts, protocol)
        except (ValueError, OSError) as error:
            print(f"statewire diagram: cannot read the counts: {error}", file=sys.stderr)
            return 1
        data = render(protocol, fmt, counts=edges)
    except TargetRaised as error:
        print(f"statewire diagram: {error}", file=sys.stderr)
        return 1
    except (TargetError, DiagramError, ImportError) as error:
        print(f"statewire diagram: {error}", file=sys.stderr)
        return 2
    if check is not None:
        path = Path(check)
        if path.exists() and not path.is_file():
            print(f"statewire diagram: {check} is not a regular file", file=sys.stderr)
            return 1
        if not path.is_file():
            print(
                f"statewire diagram: {check} does not exist; make it: "
                f"statewire diagram {target} --format {fmt} -o {check}",
                file=sys.stderr,
            )
            return 1
        try:
            committed = path.read_bytes()
        except OSError as error:
            print(f"statewire diagram: cannot read {check}: {error.strerror}", file=sys.stderr)
            return 1
        if committed != data:
            print(
                f"statewire diagram: {check} differs from what {target} draws today; "
                f"regenerate it: statewire diagram {target} --format {fmt} -o {check}",
                file=sys.stderr,
            )
            return 1
        return 0
    try:
        if output is not None:
            Path(output).write_bytes(data)
        elif sys.stdout is None:
            print("statewire diagram: no standard output to write to", file=sys.stderr)
            return 1
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    except OSError as error:
        print(
            f"statewire diagram: cannot write {output or 'to stdout'}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    return 0
