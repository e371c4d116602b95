"""Counters of every declared connection, in the text format Prometheus scrapes.

    from statewire import metrics
    counting = metrics.enable()            # or: statewire serve TARGET --metrics tcp:9100
    counting.snapshot()                    # the figures, as Python values
    counting.exposition()                  # the same, as Prometheus text
    metrics.serve(counting, "tcp:9100:interface=127.0.0.1")   # GET /metrics

Per protocol class (the ``protocol`` label):

* ``statewire_connections_open{state}``: connections open, by the state they are in now
  (read when asked: counting them costs nothing per transition);
* ``statewire_connections_total``: connections started;
* ``statewire_transitions_total{from,input,to}``: transitions, per edge of the diagram
  (``statewire diagram TARGET --counts URL`` draws them on it);
* ``statewire_errors_total{kind,side}``: remote (the peer's) and local (our code's)
  errors by the error's class;
* ``statewire_received_bytes_total``: bytes read from peers;
* ``statewire_sent_bytes_total``: bytes handed to the peers' sockets (read from each
  connection's transport when asked, added up when it closes: nothing counted per write).

Per HTTP or SMTP factory told so (:meth:`Metrics.count_responses`; ``statewire serve
--metrics`` tells the factory it serves, ``asgi(app)`` too):

* ``statewire_http_responses_total{status}``: responses and refusals, by status
  (``499``: the connection ended before any of the response left);
* ``statewire_http_request_duration_seconds``: a histogram of their durations, from the
  head's arrival to the response's end (see :mod:`statewire._response_metrics`);
* ``statewire_smtp_messages_total{status}``: messages whose content began, by the code
  of the reply that answered them (``0``: the session ended first).

Connections started after :func:`enable` are counted. Counting transitions takes the
traced path (self-loop shortcuts off), so an observed connection costs more than one that
is not: ``bench/bench_tracing.py`` measures it.
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from statewire._histogram import DURATION_BUCKETS, Histogram
from statewire.machine import TransitionCallback, observe, unobserve
from statewire.protocol import innermost

if TYPE_CHECKING:
    from statewire.protocols._log_text import EntryLog


class Metrics:
    """The observer :func:`enable` registers (see the module)."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.connections: Counter[str] = Counter()
        self.transitions: Counter[tuple[str, str, str, str]] = Counter()
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.bytes_in: Counter[str] = Counter()
        #: bytes sent by the connections that have closed (the open ones are read live)
        self.bytes_out: Counter[str] = Counter()
        #: HTTP responses by protocol and status, and their durations by protocol
        self.responses: Counter[tuple[str, int]] = Counter()
        self.durations: dict[str, Histogram] = {}
        #: SMTP messages by protocol and the code of their reply
        self.messages: Counter[tuple[str, int]] = Counter()
        #: the factories whose answers are counted (see :meth:`count_responses`)
        self._counted: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- the observer ------------------------------------------------------------------------

    def started(self, protocol: Any) -> TransitionCallback:
        name = type(protocol).__name__
        self._live.add(protocol)
        self.connections[name] += 1
        transitions = self.transitions

        def transition(old: str, input: str, new: str, frame: Any) -> None:
            transitions[name, old, input, new] += 1

        return transition

    def received(self, protocol: Any, size: int) -> None:
        self.bytes_in[type(protocol).__name__] += size

    def failed(self, protocol: Any, error: BaseException, local: bool) -> None:
        side = "local" if local else "remote"
        self.errors[type(protocol).__name__, type(error).__name__, side] += 1

    def stopped(self, protocol: Any) -> None:
        self._live.discard(protocol)
        self.bytes_out[type(protocol).__name__] += _sent(protocol)

    # -- HTTP responses ------------------------------------------------------------------------

    def count_responses(self, factory: object) -> bool:
        """Count the answers of ``factory``, or of the factory it wraps (the PROXY
        protocol's): an HTTP factory's responses (``HTTPFactory``, ``asgi(app)``), their
        statuses and durations, from its next request on; an ``SMTPFactory``'s messages,
        by their replies' codes. Its access or mail log, if it keeps one, goes on writing
        (and ``log_access()`` later still turns one on). Whether it is one of those: any
        other factory is left as it is. A factory counts for one :class:`Metrics`, the
        last that asked: counting twice counts once; :meth:`stop_counting` (and
        :func:`disable`) gives it back its own log."""
        from statewire._response_metrics import Counting, CountingLog, CountingMailLog
        from statewire.protocols.http import HTTPFactory
        from statewire.protocols.smtp import SMTPFactory

        kinds = (HTTPFactory, SMTPFactory)
        inner = innermost(factory, lambda found: isinstance(found, kinds))
        counting: type[Counting[Any]]
        if isinstance(inner, HTTPFactory):
            counting = CountingLog
        elif isinstance(inner, SMTPFactory):
            counting = CountingMailLog
        else:
            return False
        kept: EntryLog[Any] | None = inner.access_log
        while isinstance(kept, Counting):  # (another Metrics counted it: no more)
            kept = kept.then
        inner.access_log = counting(self, inner.protocol.__name__, kept)
        self._counted.add(inner)
        return True

    def stop_counting(self) -> None:
        """The factories :meth:`count_responses` counted for this one count no more: each
        gets back the log it kept (or none), with what it was told since."""
        from statewire._response_metrics import Counting

        for factory in list(self._counted):
            log = factory.access_log
            if isinstance(log, Counting) and log.metrics is self:
                factory.access_log = log.then
        self._counted = weakref.WeakSet()

    def responded(self, protocol: str, status: int, seconds: float) -> None:
        """One response (or refusal) of ``protocol`` with ``status`` took ``seconds``."""
        self.responses[protocol, status] += 1
        histogram = self.durations.get(protocol)
        if histogram is None:
            histogram = self.durations[protocol] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def mailed(self, protocol: str, status: int) -> None:
        """One message of ``protocol`` was answered ``status`` (``0``: not answered)."""
        self.messages[protocol, status] += 1

    # -- reading -------------------------------------------------------------------------------

    def open_by_state(self) -> Counter[tuple[str, str]]:
        """Connections open now, by protocol class and state."""
        found: Counter[tuple[str, str]] = Counter()
        for protocol in list(self._live):
            found[type(protocol).__name__, protocol.machine_state] += 1
        return found

    def sent(self) -> Counter[str]:
        """Bytes sent, by protocol class: the closed connections' and the open ones' now."""
        found = Counter(self.bytes_out)
        for protocol in list(self._live):
            found[type(protocol).__name__] += _sent(protocol)
        return found

    def snapshot(self) -> dict[str, dict[Any, int]]:
        """Every figure, keyed as the labels are."""
        return {
            "connections_open": dict(self.open_by_state()),
            "connections_total": dict(self.connections),
            "transitions_total": dict(self.transitions),
            "errors_total": dict(self.errors),
            "received_bytes_total": dict(self.bytes_in),
            "sent_bytes_total": dict(self.sent()),
            "http_responses_total": dict(self.responses),
            "http_request_duration_seconds_count": {
                protocol: histogram.count for protocol, histogram in self.durations.items()
            },
            "smtp_messages_total": dict(self.messages),
        }

    def exposition(self) -> str:
        """The figures in Prometheus's text exposition format (version 0.0.4)."""
        out: list[str] = []
        _family(
            out,
            "statewire_connections_open",
            "gauge",
            "Connections open, by protocol and the state they are in.",
            (({"protocol": p, "state": s}, n) for (p, s), n in self.open_by_state().items()),
        )
        _family(
            out,
            "statewire_connections_total",
            "counter",
            "Connections started, by protocol.",
            (({"protocol": p}, n) for p, n in self.connections.items()),
        )
        _family(
            out,
            "statewire_transitions_total",
            "counter",
            "Transitions, by protocol and edge of its diagram.",
            (
                ({"protocol": p, "from": a, "input": i, "to": b}, n)
                for (p, a, i, b), n in self.transitions.items()
            ),
        )
        _family(
            out,
            "statewire_errors_total",
            "counter",
            "Remote (the peer's) and local (our code's) errors, by protocol and kind.",
            (
                ({"protocol": p, "kind": k, "side": side}, n)
                for (p, k, side), n in self.errors.items()
            ),
        )
        _family(
            out,
            "statewire_received_bytes_total",
            "counter",
            "Bytes read from peers, by protocol.",
            (({"protocol": p}, n) for p, n in self.bytes_in.items()),
        )
        _family(
            out,
            "statewire_sent_bytes_total",
            "counter",
            "Bytes handed to the peers' sockets, by protocol.",
            (({"protocol": p}, n) for p, n in self.sent().items()),
        )
        if self.responses:
            _family(
                out,
                "statewire_http_responses_total",
                "counter",
                "HTTP responses and refusals, by protocol and status.",
                (({"protocol": p, "status": s}, n) for (p, s), n in self.responses.items()),
            )
            self._durations(out)
        if self.messages:
            _family(
                out,
                "statewire_smtp_messages_total",
                "counter",
                "SMTP messages, by protocol and the code of their reply (0: none).",
                (({"protocol": p, "status": s}, n) for (p, s), n in self.messages.items()),
            )
        return "".join(out)

    def _durations(self, out: list[str]) -> None:
        """The duration histograms, in Prometheus's text format."""
        name = "statewire_http_request_duration_seconds"
        out.append(
            f"# HELP {name} HTTP exchanges' durations, from the head's arrival to the "
            f"response's end, by protocol.\n# TYPE {name} histogram\n"
        )
        for protocol, histogram in sorted(self.durations.items()):
            label = f'protocol="{_escaped(protocol)}"'
            for bound, count in histogram.cumulative():
                out.append(f'{name}_bucket{{le="{bound}",{label}}} {count}\n')
            out.append(f"{name}_sum{{{label}}} {histogram.sum!r}\n")
            out.append(f"{name}_count{{{label}}} {histogram.count}\n")


def _sent(protocol: Any) -> int:
    """What ``protocol``'s transport has sent (0 when it does not count)."""
    sent = getattr(getattr(protocol, "transport", None), "bytes_sent", 0)
    return sent if isinstance(sent, int) else 0


_SAMPLE = re.compile(r"^statewire_transitions_total\{(?P<labels>.*)\} (?P<value>\d+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def transitions_in(exposition: str, protocol: str) -> dict[tuple[str, str, str], int]:
    """The transitions per edge of ``protocol`` (its class name) in an exposition this
    module wrote: what ``statewire diagram --counts`` draws."""
    found: dict[tuple[str, str, str], int] = {}
    for line in exposition.split("\n"):  # not splitlines: a label may hold a \r
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = {k: _unescaped(v) for k, v in _LABEL.findall(match["labels"])}
        if labels.get("protocol") == protocol:
            # (summed over any other label: the workers' ``pid`` of ``serve --workers``)
            edge = labels["from"], labels["input"], labels["to"]
            found[edge] = found.get(edge, 0) + int(match["value"])
    return found


def merged(expositions: Iterable[tuple[int, str]]) -> str:
    """Expositions this module wrote, one a process (``serve --workers``'s workers), as
    one: each sample labelled ``pid`` with its process's id, the samples of each family
    together under its ``HELP`` and ``TYPE`` (Prometheus's text format asks it)."""
    families: dict[str, list[str]] = {}
    for pid, text in expositions:
        family: list[str] | None = None
        for line in text.split("\n"):
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                family = families.get(name)
                if family is None:
                    family = families[name] = [line]
            elif line.startswith("# TYPE "):
                if family is not None and len(family) == 1:
                    family.append(line)
            elif line and family is not None:
                name, _, rest = line.partition("{")
                if rest:
                    family.append(f'{name}{{pid="{pid}",{rest}')
                else:  # (no labels: not written by this module, kept as it is)
                    family.append(line)
    return "".join(line + "\n" for family in families.values() for line in family)


def _unescaped(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _family(out: list[str], name: str, kind: str, help: str, samples: Any) -> None:
    out.append(f"# HELP {name} {help}\n# TYPE {name} {kind}\n")
    for labels, value in sorted(samples, key=lambda sample: sorted(sample[0].items())):
        text = ",".join(f'{key}="{_escaped(str(value))}"' for key, value in labels.items())
        out.append(f"{name}{{{text}}} {value}\n")


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_current: Metrics | None = None


def enable() -> Metrics:
    """Count every declared connection started from now on; the same counters if already
    counting."""
    global _current
    if _current is None:
        _current = Metrics()
        observe(_current)
    return _current


def disable() -> None:
    """Count no connection started from now on (the counters are dropped)."""
    global _current
    if _current is not None:
        unobserve(_current)
        _current.stop_counting()
        _current = None


def serve(
    metrics: Metrics | Callable[[], Awaitable[str]], description: str, reactor: Any = None
) -> Any:
    """Serve ``GET /metrics`` (the exposition: ``metrics``'s, or what the coroutine
    function ``metrics`` returns) on the endpoint ``description``
    (``tcp:9100:interface=127.0.0.1``), with statewire's own HTTP server. Returns the
    listening port's ``Deferred``-like result of the endpoint's ``listen``."""
    from statewire.endpoints import serverFromString
    from statewire.protocols.http import HTTPFactory, Request, Response

    if reactor is None:
        from statewire import reactor

    async def handle(request: Request, response: Response) -> None:
        if request.target.split(b"?", 1)[0] != b"/metrics":
            await response.send(404, [("Content-Type", "text/plain")], b"try /metrics\n")
            return
        if isinstance(metrics, Metrics):
            body = metrics.exposition().encode()
        else:
            body = (await metrics()).encode()
        await response.send(200, [("Content-Type", "text/plain; version=0.0.4")], body)

    return serverFromString(reactor, description).listen(HTTPFactory(handle))


__all__ = ["Metrics", "disable", "enable", "merged", "serve", "transitions_in"]
