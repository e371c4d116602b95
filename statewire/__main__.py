"""The ``statewire`` command line: ``serve`` a protocol, draw its ``diagram``, or run the
framing ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from statewire import _uvicorn_cli as uvicorn_cli
from statewire._asgi_cli import add_arguments as asgi_arguments
from statewire._asgi_cli import as_flags, given, spelling
from statewire._listen_cli import add_arguments as listen_arguments
from statewire._listen_cli import descriptions as listen_descriptions
from statewire._log_cli import LOG_LEVELS
from statewire._log_cli import setup as log_setup

#: where ``serve`` listens when not told: this machine only; ``--listen tcp:8007`` for every
#: interface (a server reachable from the network should be asked for, not a default)
DEFAULT_LISTEN = "tcp:8007:interface=127.0.0.1"


def _serve(
    targets: str,
    listen: list[str],
    uvloop: bool,
    trace: bool = False,
    metrics_at: str | None = None,
    worker_of: int | None = None,
    drain_timeout: float = 30.0,
    access_log: str | None = None,
    worker_metrics: bool = False,
    asgi: dict[str, Any] | None = None,
    limit_max_requests: int | None = None,
    limit_concurrency: int | None = None,
    log_level: str | None = None,
    log_config: str | None = None,
    graceful_timeout: float | None = None,
    notes: Sequence[str] = (),
) -> int:
    """``serve``: ``asgi`` is ``None``, else the target is an ASGI application and these
    are the ASGI options given (:func:`statewire._asgi_cli.given`); ``notes``, lines for
    the log once it is set up (:func:`statewire._uvicorn_cli.settle`'s)."""
    from statewire import reactor
    from statewire._request_limit import limit_requests
    from statewire.endpoints import serverFromString
    from statewire.target import TargetError, TargetRaised, asgi_factory_from, factory_from

    link: Any = None  # (a worker's: its link to the supervisor, made once it serves)
    try:
        log_setup(worker_of is not None, log_level, log_config)
    except ValueError as error:
        print(f"statewire serve: {error}", file=sys.stderr)
        return 2
    log = logging.getLogger("statewire.serve")
    for note in notes:
        log.info("%s", note)
    if graceful_timeout is not None:
        reactor.shutdown_timeout = graceful_timeout
    try:
        if uvloop:
            reactor.use_uvloop()
        if asgi is not None:
            from statewire._asgi_cli import asgi_options

            called, interface, keywords = asgi_options(asgi)
            factory = asgi_factory_from(targets, called, interface, **keywords)
            if graceful_timeout is not None:
                factory.calls_timeout = graceful_timeout
        else:
            factory = factory_from(targets)
        if access_log is not None:
            try:
                _keep_access_log(factory, access_log)
            except OSError as error:
                print(f"statewire serve: cannot open the access log: {error}", file=sys.stderr)
                return 1
        if limit_max_requests is not None or limit_concurrency is not None:
            option = "--limit-max-requests" if limit_max_requests else "--limit-concurrency"
            http = _http_factory(factory, option)
            if limit_concurrency is not None:
                http.limit_concurrency = limit_concurrency
            if limit_max_requests is not None:
                limit_requests(http, limit_max_requests, lambda: _retire(reactor, link))
        endpoints = [serverFromString(reactor, description) for description in listen]
        if metrics_at is not None:
            serverFromString(reactor, metrics_at)  # a bad description is a usage error
    except TargetRaised as error:  # the application's code failed, not the command line
        print(f"statewire serve: {error}", file=sys.stderr)
        return 1
    except (TargetError, ValueError, ImportError) as error:
        print(f"statewire serve: {error}", file=sys.stderr)
        return 2
    if trace:
        from statewire import tracing

        tracing.enable()
    interrupted: list[int] = []
    try:
        if metrics_at is not None:
            from statewire import metrics

            served = metrics.enable()
            served.count_responses(factory)  # (an HTTP factory's: by status, timed)
            metrics.serve(served, metrics_at, reactor)
        with _interruptible(reactor.loop, interrupted):
            ports = [endpoint.listen(factory) for endpoint in endpoints]
    except KeyboardInterrupt:
        interrupted.append(signal.SIGINT)
    except Exception as error:
        if not interrupted:  # (else the loop stopped by a signal: the error says so)
            return _not_started(reactor, factory, error)
    if interrupted:
        # SIGINT or SIGTERM during a factory's beforeServing (the loop stopped: the port
        # cancelled what it waited for, and that work ended)
        reactor.loop.run_until_complete(reactor.shutdown())
        reactor.loop.close()
        print("statewire serve: interrupted before serving", file=sys.stderr)
        return 130
    if worker_of is not None:
        from statewire._worker_link import WorkerLink

        counting = None
        if worker_metrics:  # (the supervisor serves them: --metrics with --workers)
            from statewire import metrics

            counting = metrics.enable()
            counting.count_responses(factory)
        link = WorkerLink(reactor, worker_of, ports, drain_timeout, counting)
    loop = "uvloop" if uvloop else "asyncio"
    log.info("serving %s on %s (%s)", targets, ", ".join(listen), loop)
    reactor.run()
    if link is not None:
        link.close()
    log.info("stopped")
    return 0


def _keep_access_log(factory: object, where: str) -> None:
    """``--access-log``: have the factory log each request or message (its ``log_access()``:
    HTTP's and SMTP's factories have one), to stderr with the other logs (``-``) or to a
    file of its own, the lines alone (as a log analyser reads them), reopened when moved
    away (logrotate's default)."""
    from statewire.protocol import innermost

    # (a wrapper's: statewire's PROXY reader, Twisted's WrappingFactory)
    inner = innermost(factory, lambda found: getattr(found, "log_access", None) is not None)
    log_access = getattr(inner, "log_access", None)
    if log_access is None:
        raise ValueError(
            f"--access-log: {type(factory).__name__} keeps no access log (an HTTPFactory, "
            "asgi(app) or an SMTPFactory does)"
        )
    if where != "-":
        from logging.handlers import WatchedFileHandler

        handler = WatchedFileHandler(where, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        for name in ("statewire.access", "statewire.mail"):
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.propagate = False
            logger.setLevel(logging.INFO)
    log_access()


def _http_factory(factory: object, option: str) -> Any:
    """The HTTP factory ``option`` (``--limit-max-requests``, ``--limit-concurrency``)
    applies to (inside a wrapper's: statewire's PROXY reader, Twisted's WrappingFactory)."""
    from statewire.protocol import innermost
    from statewire.protocols.http import HTTPFactory

    inner = innermost(factory, lambda found: isinstance(found, HTTPFactory))
    if not isinstance(inner, HTTPFactory):
        raise ValueError(
            f"{option}: {type(factory).__name__} is no HTTP factory (an HTTPFactory or "
            "asgi(app) counts its requests and connections)"
        )
    return inner


def _retire(reactor: Any, link: Any) -> None:
    """The request limit reached: a worker asks its supervisor for its replacement; a
    process serving alone stops gracefully."""
    from statewire.error import ReactorNotRunning

    if link is not None:
        logging.getLogger("statewire.serve").info(
            "the request limit reached: asking the supervisor for a new worker"
        )
        link.retire()
        return
    logging.getLogger("statewire.serve").info("the request limit reached: stopping")
    with contextlib.suppress(ReactorNotRunning):  # (stopping already)
        reactor.stop()


def _not_started(reactor: Any, factory: object, error: Exception) -> int:
    """A port or its factory failed to start: the ports already listening stop (their
    factory too), then the one-line error; exit status 1."""
    from statewire.error import CannotListenError

    reactor.loop.run_until_complete(reactor.shutdown())
    message = str(error)
    if not isinstance(error, CannotListenError):  # the factory's startFactory raised
        message = f"{type(factory).__name__} did not start: {type(error).__name__}: {error}"
    print(f"statewire serve: {message}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _interruptible(loop: asyncio.AbstractEventLoop, interrupted: list[int]) -> Iterator[None]:
    """While the ports start (a factory's ``beforeServing`` may run the loop: an
    application's startup), SIGINT and SIGTERM stop the loop and are noted in
    ``interrupted``: what the port waited for is cancelled there, its cleanup runs, and no
    ``KeyboardInterrupt`` lands inside the application's code. The reactor's own handlers
    come with ``run()``, and replace these."""
    if threading.current_thread() is not threading.main_thread():
        yield  # pragma: no cover - the command runs in the main thread
        return

    def interrupt(number: int) -> None:
        interrupted.append(number)
        if loop.is_running():
            loop.stop()

    numbers = (signal.SIGINT, signal.SIGTERM)
    for number in numbers:
        loop.add_signal_handler(number, interrupt, number)
    try:
        yield
    except BaseException:
        for number in numbers:
            loop.remove_signal_handler(number)
        raise
    if interrupted:
        for number in numbers:
            loop.remove_signal_handler(number)
    # else left for ``run()`` to replace with the reactor's own: a signal that comes before
    # it is caught all the same, and handled by the reactor's handler once the loop runs
    # (a graceful stop), not by the default action


def _supervise(
    target: str,
    listen: list[str],
    workers: str,
    arguments: list[str],
    drain_timeout: float,
    metrics_at: str | None = None,
    watch: list[str] | None = None,
    log_level: str | None = None,
    uvicorn: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> int:
    """``serve --workers`` (or ``--reload``: one worker, ``watch`` the folders whose files
    are watched): a supervisor running the workers (:mod:`statewire.workers`); ``uvicorn``,
    :func:`statewire._uvicorn_cli.options`."""
    from statewire.workers import Supervisor, worker_count

    uvicorn = uvicorn or {}
    try:
        count = worker_count(workers)
        log_setup(True, log_level, uvicorn.get("log_config"))
    except ValueError as error:
        print(f"statewire serve: {error}", file=sys.stderr)
        return 2
    for note in notes:
        logging.getLogger("statewire.serve").info("%s", note)
    graceful = uvicorn.get("timeout_graceful_shutdown")
    # (the workers' own graceful stop, then an ASGI application's calls, each as long as
    # that, are waited for before the supervisor kills them, with 20 s for the rest:
    # an application's shutdown; 30 s in all by default)
    stop_timeout = 30.0 if graceful is None else 2 * graceful + 20
    supervisor = Supervisor(
        target,
        listen,
        count,
        arguments=arguments,
        drain_timeout=drain_timeout,
        metrics_at=metrics_at,
        watch=watch or (),
        watch_include=uvicorn.get("reload_include") or (),
        watch_exclude=uvicorn.get("reload_exclude") or (),
        watch_interval=uvicorn.get("reload_delay") or uvicorn_cli.RELOAD_DELAY,
        stop_timeout=stop_timeout,
    )
    return supervisor.run()


def _serve_settings(
    args: argparse.Namespace,
) -> tuple[list[str], dict[str, Any], list[str] | None]:
    """``serve``'s options checked together: where to listen, the ASGI options given, and
    ``--reload``'s folders (``None``: no ``--reload``); ``ValueError`` for a usage mistake."""
    spelled = listen_descriptions(args, args.listen)
    listen = spelled or args.listen or [DEFAULT_LISTEN]
    listen = uvicorn_cli.with_backlog(
        listen, getattr(args, "backlog", None), spelled is not None, bool(args.listen)
    )
    asgi = given(args)
    if asgi and not args.asgi:
        option = spelling(*next(iter(asgi.items())))
        raise ValueError(f"{option} is an ASGI application's: serve it with --asgi")
    if not (args.reload or args.reload_dir):
        return listen, asgi, None
    if not args.reload:
        raise ValueError("--reload-dir goes with --reload")
    if args.workers is not None:
        raise ValueError(
            "--reload serves one worker, reloaded at each change: leave out --workers"
        )
    folders = [os.path.abspath(d) for d in args.reload_dir or [os.curdir]]
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"--reload-dir: {folder} is not a folder")
    return listen, asgi, folders


def _count(text: str) -> int:
    """A positive whole number."""
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run the ``statewire`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="statewire", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a protocol until SIGINT or SIGTERM")
    serve.add_argument(
        "target",
        help="FILE.py:NAME or MODULE:NAME: a Factory, a function making one, or a Protocol "
        "class (with --asgi: an ASGI application)",
    )
    serve.add_argument(
        "--asgi",
        action="store_true",
        help="TARGET is an ASGI 3 application (a Starlette or FastAPI app, as uvicorn "
        "MODULE:app takes), served by statewire.protocols.asgi.asgi(app)",
    )
    serve.add_argument(
        "--listen",
        action="append",
        metavar="DESCRIPTION",
        help="where to listen, e.g. tcp:8007 for every interface (repeatable; default "
        "tcp:8007:interface=127.0.0.1, this machine only)",
    )
    serve.add_argument("--uvloop", action="store_true", help="run on uvloop")
    serve.add_argument(
        "--trace",
        action="store_true",
        help="log each transition of each connection (rate-limited; logger statewire.trace)",
    )
    serve.add_argument(
        "--metrics",
        metavar="DESCRIPTION",
        help="serve counters at GET /metrics (Prometheus text) on this endpoint, e.g. "
        "tcp:9100:interface=127.0.0.1",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        help="serve in N worker processes (a number, or auto: one per CPU) run by a "
        "supervisor: SIGHUP reloads them without downtime, a worker that dies is restarted "
        "(default: serve in this one process)",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="for development: serve in one worker, reloaded (as by SIGHUP) whenever a "
        "Python file under the current folder (or --reload-dir) changes",
    )
    serve.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="with --reload: watch this folder instead of the current one (repeatable)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --workers: how long a reloaded worker lets its connections finish (default 30)",
    )
    serve.add_argument(
        "--access-log",
        nargs="?",
        const="-",
        metavar="DEST",
        help="log each HTTP request (Combined Log Format, logger statewire.access) or SMTP "
        "message (logger statewire.mail): DEST - (or none) with the other logs on stderr, "
        "else a file the lines are appended to (a path with a ':' as --access-log=PATH)",
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_const",
        const=None,
        help="log no request (the default; uvicorn's option)",
    )
    serve.add_argument(
        "--limit-max-requests",
        type=_count,
        metavar="N",
        help="after N requests (an HTTP factory's, asgi(app)'s), make way for a fresh "
        "process: alone, stop gracefully (exit 0); a worker of --workers is replaced "
        "(uvicorn's option of that name)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=_count,
        metavar="N",
        help="while more than N connections are open, answer each request 503 and close "
        "its connection (an HTTP factory's, asgi(app)'s; uvicorn's option of that name)",
    )
    serve.add_argument(
        "--app-dir",
        default=os.curdir,
        metavar="DIR",
        help="find MODULE:NAME in this folder too, after the standard library and the "
        "installed packages (default: the current one; uvicorn's --app-dir)",
    )
    serve.add_argument(
        "--log-level",
        choices=list(LOG_LEVELS),
        help="log from this level up (default info; uvicorn's option: trace is debug with "
        "--trace's transitions, which are info lines: hidden from warning up)",
    )
    serve.add_argument("--worker-of", type=int, metavar="FD", help=argparse.SUPPRESS)
    serve.add_argument("--worker-metrics", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--version", action="version", version=_version())
    listen_arguments(serve)
    asgi_arguments(serve)
    uvicorn_cli.add_arguments(serve)
    diagram = commands.add_parser("diagram", help="draw a declared protocol's state diagram")
    diagram.add_argument(
        "target",
        help="FILE.py:NAME or MODULE:NAME: a declared protocol class, or a factory of one",
    )
    diagram.add_argument(
        "--format",
        choices=["svg", "png", "dot", "mermaid"],
        help="default: from the file's suffix (.svg .png .dot .gv .mmd), else dot",
    )
    diagram.add_argument(
        "--app-dir",
        default=os.curdir,
        metavar="DIR",
        help="find MODULE:NAME in this folder too, after the standard library and the "
        "installed packages (default: the current one)",
    )
    diagram.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")
    diagram.add_argument(
        "--check",
        metavar="FILE",
        help="exit 1 if FILE differs from what the protocol draws today (for CI)",
    )
    diagram.add_argument(
        "--counts",
        metavar="URL",
        help="a running server's metrics URL (serve --metrics): each edge says how often "
        "it was taken",
    )
    demo = commands.add_parser("demo", help="frame a sample byte stream and print the frames")
    demo.add_argument("--seed", type=int, default=2026, help="seed for the random read sizes")
    args = parser.parse_args(_bare_access_log(sys.argv[1:] if argv is None else argv))
    if args.command in ("serve", "diagram"):
        # MODULE:NAME from the project's folder (uvicorn's --app-dir): the installed
        # command's sys.path holds its own folder, not the current one. Searched last, so a
        # stray file there (an http.py, a datetime.py) never stands in for the standard
        # library's module or an installed package's
        args.app_dir = os.path.abspath(args.app_dir)
        if args.app_dir not in sys.path:
            sys.path.append(args.app_dir)
        if args.command == "serve" and args.log_level == "trace":
            args.trace = True  # (uvicorn's most talkative level: the transitions too)
    if args.command == "serve":
        try:
            notes = uvicorn_cli.settle(args)
            listen, asgi, watch = _serve_settings(args)
        except ValueError as error:
            print(f"statewire serve: {error}", file=sys.stderr)
            return 2
        if watch is not None:
            args.workers = "1"
        if args.workers is not None:
            passed = ["--uvloop"] * args.uvloop + ["--trace"] * args.trace + ["--asgi"] * args.asgi
            passed += [*as_flags(asgi), *uvicorn_cli.worker_flags(args)]
            if args.log_level is not None:
                passed.append(f"--log-level={args.log_level}")
            passed.append(f"--app-dir={args.app_dir}")
            if args.limit_max_requests is not None:
                passed.append(f"--limit-max-requests={args.limit_max_requests}")
            if args.limit_concurrency is not None:
                passed.append(f"--limit-concurrency={args.limit_concurrency}")
            if args.access_log is not None:
                where = args.access_log
                where = where if where == "-" else os.path.abspath(where)
                passed.append(f"--access-log={where}")
            return _supervise(
                args.target,
                listen,
                args.workers,
                passed,
                args.drain_timeout,
                args.metrics,
                watch,
                args.log_level,
                uvicorn_cli.options(args),
                notes,
            )
        return _serve(
            args.target,
            listen,
            args.uvloop,
            args.trace,
            args.metrics,
            args.worker_of,
            args.drain_timeout,
            args.access_log,
            args.worker_metrics,
            asgi if args.asgi else None,
            uvicorn_cli.request_limit(args),
            args.limit_concurrency,
            args.log_level,
            getattr(args, "log_config", None),
            getattr(args, "timeout_graceful_shutdown", None),
            notes if args.worker_of is None else (),
        )
    if args.command == "diagram":
        from statewire._diagram_cli import diagram as draw

        return draw(args.target, args.format, args.output, args.check, args.counts)
    from statewire import demo as demo_module

    if sys.stdout is None:  # started with stdout closed
        print("statewire demo: no standard output to write to", file=sys.stderr)
        return 1
    try:
        demo_module.run(sys.stdout, seed=args.seed)
        sys.stdout.flush()
    except BrokenPipeError:  # `statewire demo | head`: the reader has seen enough
        # stdout's buffer would be flushed again at exit, into the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as error:  # a full disk, ...
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"statewire demo: cannot write: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def _bare_access_log(argv: list[str]) -> list[str]:
    """uvicorn's ``--access-log`` is a flag: given bare before ``MODULE:NAME``
    (``serve --access-log app:app``), it is not taken for a file named ``app:app``.
    (A log file whose path holds a ``:`` is named with ``--access-log=PATH``.)"""
    out = list(argv)
    for at, word in enumerate(out[:-1]):
        if word == "--access-log" and ":" in out[at + 1] and not out[at + 1].startswith("-"):
            out[at] = "--access-log=-"
    return out


def _version() -> str:
    """What ``--version`` prints: statewire's version, and the Python running it."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        mine = version("statewire")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        mine = "(not installed)"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"statewire {mine} with {python} on {platform.system()}"


if __name__ == "__main__":
    sys.exit(main())
