"""Serving one target in N worker processes: the supervisor, and the worker's link to it.

Theory of operation
-------------------
The supervisor serves nothing itself. It binds the listening sockets once, then runs N
workers, each ``python -m statewire serve TARGET --listen fd:K ... --worker-of L``: the
same one-process ``serve`` a user runs by hand, serving the sockets it inherits. Workers
are subprocesses, not ``multiprocessing`` children or forks, so that each imports TARGET
afresh (a reload picks up new code), nothing is pickled, and nothing of the supervisor but
its sockets is inherited. The supervisor never imports TARGET: it is a plain asyncio
program watching processes (with ``--metrics``, it also runs a reactor of its own, serving
the workers' figures together: :meth:`Supervisor.collect_metrics`).

Sockets. Where the platform has ``SO_REUSEPORT``, the supervisor binds one listening TCP
socket per worker slot, all on one port, and hands slot *i*'s socket to the worker of slot
*i*: the kernel spreads new connections evenly over the slots. Without it, one socket is
shared by every worker (they take turns in ``accept``); UNIX sockets and handed sockets
(``fd:``, ``systemd:``) are always shared. An ``ssl:`` description is bound as ``tcp:``'s
and handed on with its key and certificate (each worker does its own TLS; the supervisor
only checks that they load). The supervisor holds every listening socket open
until it exits, which is what makes restarts and reloads lose nothing: closing a socket
drops the connections queued on it, so no worker ever owns one alone.

* A worker that dies leaves its slot's socket open: what arrives before its replacement
  accepts waits in that socket's backlog. It is restarted after a back-off (0.1 s, doubling
  up to 10 s; back to 0.1 s once a worker has lived 10 s), and logged.
* ``SIGHUP`` (:meth:`Supervisor.reload`): N new workers start on the same sockets; once all
  accept, each old one is told to drain: it stops accepting, asks the connections whose
  protocol closes gracefully in a way of its own to do so (HTTP: kept-alive clients
  leave it), lets its connections finish (at most ``drain_timeout`` seconds), then stops
  gracefully. If a new worker fails to
  start, the reload is abandoned and the old workers go on serving.
* ``SIGTERM``/``SIGINT``: every worker gets ``SIGTERM`` (the reactor's graceful stop), the
  supervisor waits for them and exits 0; a second signal is passed on too (the workers then
  abort the connections still open).

The link. Each worker gets one end of a socket pair (``--worker-of L``;
:class:`~statewire._worker_link.WorkerLink` on the worker's side): it writes ``ready``
once every port accepts, and ``retire`` when it reached its request limit (the supervisor
then replaces it: :meth:`Supervisor._replace`); the supervisor writes ``drain`` to retire
it, and ``metrics`` for its figures (answered ``metrics N`` and N bytes); when the
supervisor is gone, even killed, the worker reads the end of the stream and stops
gracefully. Workers run in their own session, so a Ctrl-C reaches
the supervisor alone, which stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from statewire import metrics
from statewire._reactor import Reactor
from statewire._watch import MAX_FILES, Scan, changes, scan
from statewire.endpoints import (
    TLS_CHOICES,
    descriptionContext,
    handedDescriptor,
    serverDescription,
    serverParts,
    wantsTLS,
)
from statewire.error import CannotListenError
from statewire.runtime.listening import REUSE_PORT, adopted_stream, bound_tcp, bound_unix

log = logging.getLogger("statewire.workers")
#: the largest exposition a worker's answer may announce (a larger one is no answer)
MAX_EXPOSITION = 256 << 20

#: seconds before the first restart of a worker that died; doubled at each death in a row
BACKOFF_FIRST = 0.1
#: the longest wait before a restart
BACKOFF_MAX = 10.0
#: seconds a worker must live for its death to count as the first in a row again
STABLE_AFTER = 10.0


class WorkersError(Exception):
    """The workers could not be set up: a listening description they cannot serve."""


def worker_count(value: str) -> int:
    """``--workers``' value: a number >= 1, or ``auto`` for the number of CPUs."""
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--workers takes a number or auto, not {value!r}") from None
    if count < 1:
        raise ValueError(f"--workers must be at least 1, not {count}")
    return count


@dataclass
class _Listener:
    """One listening description: its socket per slot (or one shared), how workers name
    it, and what to remove when the supervisor exits."""

    sockets: list[socket.socket]
    #: passed on to each worker's fd: description (proxy=..., an ssl: one's privateKey=...)
    options: dict[str, str]
    path: str | None = None  # a UNIX socket file this supervisor made

    def worker_description(self, slot: int) -> tuple[str, int]:
        sock = self.sockets[slot % len(self.sockets)]
        fileno = sock.fileno()
        return serverDescription("fd", {"fileno": str(fileno), **self.options}), fileno

    def where(self) -> str:
        sock = self.sockets[0]
        if sock.family == socket.AF_UNIX:
            return str(sock.getsockname())
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        if self.path and not self.path.startswith("\0"):
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _number(
    values: dict[str, str], name: str, default: str, description: str, base: int = 10
) -> int:
    try:
        return int(values.get(name, default), base)
    except ValueError:
        raise WorkersError(f"{name} in {description!r} is not a number") from None


def _exit_status(code: int) -> str:
    """``code 3``, or ``signal SIGKILL`` for a process a signal ended."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _bind(description: str, count: int) -> _Listener:
    """The sockets for ``description``: ``count`` with SO_REUSEPORT, else one shared."""
    try:
        kind, values = serverParts(description)
    except ValueError as error:
        raise WorkersError(str(error)) from None
    options = {k: v for k, v in values.items() if k.startswith("proxy")}
    backlog = _number(values, "backlog", "50", description)
    if wantsTLS(kind, values):
        # TLS (ssl:, or fd:/systemd: with a key): each worker gets the key and certificate
        key = values.get("privateKey")
        if key is None:
            raise WorkersError(f"{description!r} lacks privateKey")
        options["privateKey"] = os.path.abspath(key)
        options["certKey"] = os.path.abspath(values.get("certKey", key))
        # the TLS choices too (a key's passphrase by the name of its variable: the
        # workers inherit the environment)
        options.update((k, v) for k, v in values.items() if k in TLS_CHOICES)
        if "caCerts" in options:
            options["caCerts"] = os.path.abspath(options["caCerts"])
        try:  # (said once, here, rather than by every worker)
            descriptionContext(description, options)
        except ValueError as error:
            raise WorkersError(str(error)) from None
    if kind in ("tcp", "tcp6", "ssl"):
        port = _number(values, "port", "0", description)
        interface = values.get("interface", "::" if kind == "tcp6" else "")
        first = bound_tcp(port, interface, backlog, reuse_port=REUSE_PORT)
        sockets = [first]
        try:
            port = first.getsockname()[1]  # port 0: every slot on the port the first got
            while REUSE_PORT and len(sockets) < count:
                sockets.append(bound_tcp(port, interface, backlog, reuse_port=True))
        except CannotListenError:
            for sock in sockets:
                sock.close()
            raise
        return _Listener(sockets, options)
    if kind == "unix":
        mode = _number(values, "mode", "666", description, base=8)
        sock = bound_unix(values["address"], backlog, mode)
        return _Listener([sock], options, path=values["address"])
    if kind in ("fd", "systemd"):
        try:
            fileno, family = handedDescriptor(description)
        except ValueError as error:
            raise WorkersError(str(error)) from None
        sock = adopted_stream(fileno, family)
        os.close(fileno)  # ours is the duplicate, handed on to each worker
        return _Listener([sock], options)
    raise WorkersError(f"workers cannot serve {description!r}: {kind}: is unknown to them")


@dataclass(eq=False)
class _Worker:
    """One worker process and what the supervisor knows of it."""

    slot: int
    process: asyncio.subprocess.Process
    link: socket.socket
    ready: asyncio.Future[None]
    started: float = field(default_factory=time.monotonic)
    #: asked to stop (a reload's old worker, a stop): its exit is not a death
    retiring: bool = False
    #: it asked to be replaced (its request limit reached), and whether that is under way
    wants_out: bool = False
    replacing: bool = False
    #: what it said that is not read yet; the metrics asked of it and not answered (by
    #: their numbers); whether its link is still heard
    heard: bytearray = field(default_factory=bytearray)
    asked: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    heard_out: bool = False


class Supervisor:
    """Serve ``target`` (``FILE.py:NAME`` or ``MODULE:NAME``, as ``statewire serve``
    takes it) on the ``listen`` descriptions in ``workers`` processes, until ``SIGTERM``
    or ``SIGINT``; ``SIGHUP`` reloads. See the module documentation.

    ``arguments`` are passed on to each worker's ``statewire serve`` (``--uvloop``,
    ``--trace``). :meth:`run` blocks in the main thread and returns the exit code.

    ``metrics_at`` (an endpoint description) serves ``GET /metrics`` from the supervisor:
    each scrape asks every running worker for its figures over its link (the workers
    count with ``--worker-metrics``) and answers them together, each sample labelled with
    its worker's ``pid`` (:func:`statewire.metrics.merged`): a worker restarted or
    reloaded starts new series, as a new process's counters do. A worker that does not
    answer within :attr:`metrics_timeout` is left out of that scrape.
    """

    #: seconds a scrape waits for each worker's figures
    metrics_timeout = 5.0

    def __init__(
        self,
        target: str,
        listen: Sequence[str],
        workers: int,
        *,
        arguments: Sequence[str] = (),
        drain_timeout: float = 30.0,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        metrics_at: str | None = None,
        watch: Sequence[str] = (),
        watch_interval: float = 0.5,
        watch_include: Sequence[str] = (),
        watch_exclude: Sequence[str] = (),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.target = target
        self.listen = list(listen)
        self.workers = workers
        self.arguments = list(arguments)
        self.drain_timeout = drain_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.metrics_at = metrics_at
        #: folders whose Python files are watched (``--reload``): a change reloads the
        #: workers (:mod:`statewire._watch`), looked for every ``watch_interval`` seconds;
        #: the files its patterns include besides, and those they exclude
        self.watch = list(watch)
        self.watch_interval = watch_interval
        self.watch_include = list(watch_include)
        self.watch_exclude = list(watch_exclude)
        self._watch_full = False  # (warned that a scan reached MAX_FILES)
        if metrics_at is not None:
            self.arguments.append("--worker-metrics")
        self._listeners: list[_Listener] = []
        self._slots: list[_Worker | None] = [None] * workers
        self._alive: set[_Worker] = set()
        self._failures = [0] * workers
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_asked: asyncio.Event | None = None
        self._serving = False  # the first workers all accepted: deaths are restarted
        self._stopping = False
        self._reloading: asyncio.Task[bool] | None = None
        #: the number of the last metrics asked of a worker
        self._asked = 0
        self._reload_again = False

    def run(self) -> int:
        """Bind, start the workers, serve until told to stop; the exit code: 0 after a
        stop; 2 for a description the workers cannot serve, or when the first workers
        cannot load the target; 1 when a socket cannot be bound or the first workers fail
        otherwise."""
        try:
            self._listeners = [_bind(d, self.workers) for d in self.listen]
        except (WorkersError, CannotListenError, ValueError) as error:
            for listener in self._listeners:
                listener.close()
            print(f"statewire serve: {error}", file=sys.stderr)
            return 1 if isinstance(error, CannotListenError) else 2
        try:
            return asyncio.run(self._main())
        finally:
            for listener in self._listeners:
                listener.close()

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_asked = asyncio.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._stop_signal, number)
        loop.add_signal_handler(signal.SIGHUP, self._hup)
        reactor: Reactor | None = None
        mode = "SO_REUSEPORT" if REUSE_PORT else "one shared socket"
        for listener in self._listeners:
            shared = "shared" if len(listener.sockets) == 1 else mode
            log.info("%d workers (%s) listening on %s", self.workers, shared, listener.where())
        try:
            if self.metrics_at is not None:
                reactor = Reactor()
                try:
                    await metrics.serve(self.collect_metrics, self.metrics_at, reactor)
                except (ValueError, CannotListenError) as error:
                    print(f"statewire serve: --metrics: {error}", file=sys.stderr)
                    return 2 if isinstance(error, ValueError) else 1
                log.info("the workers' metrics served on %s", self.metrics_at)
            before = await asyncio.to_thread(self._scan) if self.watch else {}
            code = await self._start_first()
            while code is not None and self.watch and not self._stop_asked.is_set():
                # --reload: code that does not start yet is waited for, as uvicorn does
                log.error("the workers did not start: a change to the code tries again")
                for worker in list(self._alive):  # (one not ready in time)
                    self._dismiss(worker)
                before, changed = await self._changed(before)
                code = await self._start_first() if changed else None
            if code is None:
                if self.watch and not self._stop_asked.is_set():
                    self._spawn(self._watch_files(before))
                await self._stop_asked.wait()
                code = 0
            await self._stop()
            return code
        finally:
            if reactor is not None:
                await reactor.shutdown()
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(number)

    async def _start_first(self) -> int | None:
        """Start the first workers; ``None`` once all accept, else the exit code."""
        assert self._stop_asked is not None
        try:
            first = [await self._start(slot) for slot in range(self.workers)]
        except OSError as error:
            log.error("cannot start the workers: %s", error)
            return 1
        self._slots = list(first)
        stopped = asyncio.ensure_future(self._stop_asked.wait())
        ready = asyncio.ensure_future(self._all_ready(first))
        await asyncio.wait([stopped, ready], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not ready.done():
            ready.cancel()
            return None  # told to stop while starting: a normal stop
        if ready.result():
            self._serving = True
            log.info("serving %s in %d workers", self.target, self.workers)
            self._replace_due()  # (the ones that asked while the others started)
            return None
        codes = [w.process.returncode for w in first if w.process.returncode]
        return 2 if 2 in codes else 1

    async def _start(self, slot: int) -> _Worker:
        """Start the worker of ``slot`` on its slot's sockets."""
        ours, theirs = socket.socketpair()  # OSError (out of descriptors): the caller's
        ours.setblocking(False)
        descriptions: list[str] = []
        handed = [theirs.fileno()]
        for listener in self._listeners:
            description, fileno = listener.worker_description(slot)
            descriptions += ["--listen", description]
            handed.append(fileno)
        command = [sys.executable, "-m", "statewire", "serve", self.target, *descriptions]
        command += ["--worker-of", str(theirs.fileno()), "--drain-timeout"]
        command += [repr(self.drain_timeout), *self.arguments]
        try:
            process = await asyncio.create_subprocess_exec(
                *command, pass_fds=handed, start_new_session=True
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(slot, process, ours, asyncio.get_running_loop().create_future())
        self._alive.add(worker)
        self._spawn(self._watch(worker))
        log.info("worker %d (pid %d) started", slot, process.pid)
        return worker

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker) -> None:
        """Hear the worker say it is ready; when it exits, restart it if it died."""
        loop = asyncio.get_running_loop()
        reading = asyncio.ensure_future(self._hear(loop, worker))
        code = await worker.process.wait()
        reading.cancel()
        worker.link.close()
        self._alive.discard(worker)
        if not worker.ready.done():
            worker.ready.set_result(None)
        how = _exit_status(code)
        if not self._serving:
            # (stopped by the supervisor's own stop while it started: no failure of its own)
            report = log.info if self._stopping else log.error
            verdict = "stopped while starting" if self._stopping else "did not start"
            report("worker %d (pid %d) %s (%s)", worker.slot, worker.process.pid, verdict, how)
            return
        if worker.retiring or self._stopping:
            log.info("worker %d (pid %d) exited with %s", worker.slot, worker.process.pid, how)
            return
        if self._slots[worker.slot] is not worker:
            log.error("worker %d (pid %d) exited with %s", worker.slot, worker.process.pid, how)
            return  # a reload's new worker that did not start: the reload gives up
        self._slots[worker.slot] = None
        lived = time.monotonic() - worker.started
        if lived >= STABLE_AFTER:
            self._failures[worker.slot] = 0
        delay = min(BACKOFF_FIRST * 2 ** self._failures[worker.slot], BACKOFF_MAX)
        self._failures[worker.slot] += 1
        log.error(
            "worker %d (pid %d) died (%s); restarting it in %.1f s",
            worker.slot,
            worker.process.pid,
            how,
            delay,
        )
        self._spawn(self._restart(worker.slot, delay))

    async def _hear(self, loop: asyncio.AbstractEventLoop, worker: _Worker) -> None:
        """Read what ``worker`` says: ``ready``, and the metrics asked of it."""
        heard = worker.heard
        try:
            with contextlib.suppress(OSError):
                while data := await loop.sock_recv(worker.link, 65536):
                    heard += data
                    while self._heard_one(worker):
                        pass
        finally:
            worker.heard_out = True
            for asked in worker.asked.values():  # (it exited, or closed its link: no answer)
                if not asked.done():
                    asked.cancel()
            worker.asked.clear()

    def _heard_one(self, worker: _Worker) -> bool:
        """Take one whole message of ``worker``'s from what it said; whether there was."""
        heard = worker.heard
        end = heard.find(b"\n")
        if end < 0:
            return False
        line = bytes(heard[:end])
        if line == b"ready":
            del heard[: end + 1]
            if not worker.ready.done():
                log.info("worker %d (pid %d) ready", worker.slot, worker.process.pid)
                worker.ready.set_result(None)
            self._replace_when_due(worker)  # (one that asked before it was ready)
            return True
        if line == b"retire":
            del heard[: end + 1]
            if not worker.wants_out:
                worker.wants_out = True
                log.info("worker %d (pid %d) asks to be replaced", worker.slot, worker.process.pid)
            self._replace_when_due(worker)
            return True
        word, number, size = [*line.split(b" "), b"", b""][:3]
        if (
            word != b"metrics"
            or not (number.isdigit() and size.isdigit())
            or int(size) > MAX_EXPOSITION
        ):
            del heard[: end + 1]  # (nothing a worker says: skipped)
            return True
        total = end + 1 + int(size)
        if len(heard) < total:
            return False
        text = bytes(heard[end + 1 : total])
        del heard[:total]
        asked = worker.asked.pop(int(number), None)  # (none: an answer given up on)
        if asked is not None and not asked.done():
            asked.set_result(text)
        return True

    async def collect_metrics(self) -> str:
        """Every running worker's figures, labelled with its ``pid`` (see the class)."""
        workers = sorted(
            (
                w
                for w in self._alive
                if w.ready.done() and w.process.returncode is None and not w.heard_out
            ),
            key=lambda w: w.process.pid,
        )
        said = await asyncio.gather(*(self._metrics_of(worker) for worker in workers))
        texts = [
            (worker.process.pid, text.decode("utf-8", "replace"))
            for worker, text in zip(workers, said, strict=True)
            if text is not None
        ]
        return metrics.merged(texts)

    async def _metrics_of(self, worker: _Worker) -> bytes | None:
        """``worker``'s exposition, asked over its link (``metrics ID``), or ``None`` when
        it gave none within :attr:`metrics_timeout` (the question and its answer are then
        forgotten: a late answer is dropped by its number)."""
        loop = asyncio.get_running_loop()
        self._asked += 1
        number = self._asked
        answer: asyncio.Future[bytes] = loop.create_future()
        worker.asked[number] = answer

        async def asked() -> bytes:
            await loop.sock_sendall(worker.link, b"metrics %d\n" % number)
            return await answer

        try:
            return await asyncio.wait_for(asked(), self.metrics_timeout)
        except (asyncio.TimeoutError, OSError, asyncio.CancelledError) as error:
            if isinstance(error, asyncio.CancelledError) and not answer.cancelled():
                raise  # (the scrape itself cancelled)
            log.warning("worker %d (pid %d) gave no metrics", worker.slot, worker.process.pid)
            return None
        finally:
            worker.asked.pop(number, None)

    async def _restart(self, slot: int, delay: float) -> None:
        await asyncio.sleep(delay)
        # a reload may have filled the slot meanwhile
        if self._stopping or self._slots[slot] is not None:
            return
        try:
            started = await self._start(slot)
        except OSError as error:
            delay = min(delay * 2, BACKOFF_MAX)
            log.error("cannot start worker %d (%s); trying again in %.1f s", slot, error, delay)
            self._spawn(self._restart(slot, delay))
            return
        if self._stopping or self._slots[slot] is not None:
            # (a reload switched over while it started: its worker serves the slot)
            self._dismiss(started)
            return
        self._slots[slot] = started

    async def _all_ready(self, workers: Sequence[_Worker]) -> bool:
        """Whether every one of ``workers`` says it accepts within ``start_timeout``."""
        gathered = asyncio.gather(*(w.ready for w in workers))
        # (a wait cancelled, by a stop while they start, leaves the gathering's
        # CancelledError unread: read here, not logged as "never retrieved")
        gathered.add_done_callback(_read_outcome)
        try:
            await asyncio.wait_for(gathered, self.start_timeout)
        except asyncio.TimeoutError:
            log.error("workers did not start within %s s", self.start_timeout)
            return False
        return all(w.process.returncode is None for w in workers)

    def _stop_signal(self, number: int) -> None:
        assert self._stop_asked is not None
        if self._stopping:  # again: pass it on, the workers abort what is still open
            log.warning(
                "%s during the stop: passed on to the workers", signal.Signals(number).name
            )
            for worker in list(self._alive):
                self._signal(worker, signal.SIGTERM)
            return
        log.info("%s: stopping the workers", signal.Signals(number).name)
        self._stop_asked.set()

    async def _watch_files(self, before: Scan) -> None:
        """``--reload``: reload the workers when a watched file changes (from ``before``,
        the scan made before the first workers started)."""
        where = ", ".join(self.watch)
        what = " and ".join(["the Python files", *self.watch_include])
        log.info("watching %s under %s: a change reloads the workers", what, where)
        while True:
            before, changed = await self._changed(before)
            if not changed:
                return  # (stopping)
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            log.info("%s changed%s: reloading", changed[0], more)
            self._hup()

    def _scan(self) -> Scan:
        return scan(self.watch, self.watch_include, self.watch_exclude)

    async def _changed(self, before: Scan) -> tuple[Scan, list[str]]:
        """Wait until a watched file differs from ``before``: the new scan and the files
        that changed; nothing changed once the supervisor stops. A scan that fails is
        logged and tried again (the watching never ends on its own)."""
        assert self._stop_asked is not None
        while not (self._stopping or self._stop_asked.is_set()):
            await asyncio.sleep(self.watch_interval)
            try:
                after = await asyncio.to_thread(self._scan)
            except Exception:
                log.exception("cannot scan the watched folders; trying again")
                continue
            if len(after) >= MAX_FILES and not self._watch_full:
                self._watch_full = True
                log.warning(
                    "%d Python files or more under %s: only those are watched; name "
                    "smaller folders with --reload-dir",
                    MAX_FILES,
                    ", ".join(self.watch),
                )
            changed = changes(before, after)
            if changed:
                return after, changed
            before = after
        return before, []

    def _hup(self) -> None:
        if self._stopping or not self._serving:
            log.warning("SIGHUP before the workers serve, or while they stop: ignored")
            return
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.ensure_future(self.reload())
        # (a worker that asked meanwhile, and was not replaced by it: an abandoned reload)
        self._reloading.add_done_callback(lambda _: self._replace_due())

    async def reload(self) -> bool:
        """Start new workers; once all accept, drain the old ones. Whether it did (when
        a new worker cannot start, the old ones go on serving)."""
        while True:
            self._reload_again = False
            log.info("reloading: starting %d new workers", self.workers)
            new: list[_Worker] = []
            try:
                for slot in range(self.workers):
                    new.append(await self._start(slot))
            except OSError as error:
                log.error("cannot start a new worker: %s", error)
            if len(new) < self.workers or not await self._all_ready(new) or self._stopping:
                for worker in new:
                    self._dismiss(worker)
                log.error("reload abandoned: the old workers go on serving")
                if self._reload_again and not self._stopping:
                    continue  # (asked again meanwhile: new code, perhaps the fix)
                return False
            # the workers serving now, not those when the reload began: one that died
            # meanwhile was restarted, and the restarted one drains too
            old = [w for w in self._slots if w is not None]
            self._slots = list(new)
            self._failures = [0] * self.workers
            for worker in old:
                self._drain(worker)
            log.info("reloaded: the %d old workers drain", len(old))
            if not self._reload_again:
                return True

    def _replace_when_due(self, worker: _Worker) -> None:
        """Replace ``worker`` if it asked to be and it can be now; else a later moment
        will: its ``ready``, the first workers all serving, a reload's end."""
        if worker.wants_out and not worker.replacing and self._replaceable(worker):
            worker.replacing = True
            self._spawn(self._replace(worker))

    def _replace_due(self) -> None:
        for worker in list(self._slots):
            if worker is not None:
                self._replace_when_due(worker)

    async def _replace(self, worker: _Worker) -> bool:
        """Start a new worker in ``worker``'s slot; once it accepts, drain ``worker``, as
        a reload does for every slot (what a worker that reached its request limit asks).
        Whether it did. When the new one cannot start, ``worker`` goes on serving, and is
        tried again after the next reload (one that is abandoned); when the supervisor
        stops or reloads meanwhile, or ``worker`` dies, the new one is stopped."""
        try:
            new = await self._start(worker.slot)
        except OSError as error:
            log.error("cannot start a new worker: %s", error)
            worker.replacing = False
            return False
        ready = await self._all_ready([new])
        if not ready or not self._replaceable(worker):
            self._dismiss(new)
            worker.replacing = False
            if not ready and not self._stopping:
                log.error("worker %d not replaced: it goes on serving", worker.slot)
            elif not self._stopping and not worker.retiring:
                log.info(
                    "worker %d's replacement (pid %d) stopped: not needed now",
                    worker.slot,
                    new.process.pid,
                )
            return False
        self._slots[worker.slot] = new
        self._drain(worker)
        log.info("worker %d (pid %d) replaced: it drains", worker.slot, worker.process.pid)
        self._replace_when_due(new)  # (one that reached its own limit already)
        return True

    def _replaceable(self, worker: _Worker) -> bool:
        """Whether ``worker`` serves its slot, and nothing else replaces it: no reload
        (whose old workers are those of the slots when it starts), no stop."""
        reloading = self._reloading is not None and not self._reloading.done()
        return (
            self._serving
            and not (self._stopping or reloading or worker.retiring)
            and self._slots[worker.slot] is worker
        )

    def _dismiss(self, worker: _Worker) -> None:
        """Stop ``worker`` gracefully (``SIGTERM``); its exit is no death."""
        worker.retiring = True
        self._signal(worker, signal.SIGTERM)

    def _drain(self, worker: _Worker) -> None:
        """Tell ``worker`` to drain (its connections finish, then it stops); its exit is
        no death."""
        worker.retiring = True
        with contextlib.suppress(OSError):
            worker.link.send(b"drain\n")

    def _signal(self, worker: _Worker, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(number)

    async def _stop(self) -> None:
        """Stop every worker gracefully; kill the ones still there after
        ``stop_timeout``."""
        self._stopping = True
        if self._reloading is not None:
            self._reloading.cancel()
        alive = list(self._alive)
        for worker in alive:
            self._dismiss(worker)
        waits = [w.process.wait() for w in alive]
        if waits:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=self.stop_timeout
            )
            if late:
                log.error(
                    "%d workers did not stop within %s s; killed", len(late), self.stop_timeout
                )
                for worker in alive:
                    if worker.process.returncode is None:
                        self._signal(worker, signal.SIGKILL)
                await asyncio.wait(late)
        log.info("stopped")


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def serve(
    target: str,
    listen: Sequence[str],
    workers: int,
    **options: Any,
) -> int:
    """Serve ``target`` in ``workers`` processes until ``SIGTERM`` or ``SIGINT`` (see
    :class:`Supervisor`, which takes the same ``options``); the exit code.

    ``target`` is a name (``FILE.py:NAME`` or ``MODULE:NAME``), not a factory object:
    each worker imports it itself, and a reload imports it again.
    """
    return Supervisor(target, listen, workers, **options).run()
