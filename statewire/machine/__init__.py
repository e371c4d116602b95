"""Layer 3: automat machines whose inputs are frames cut by per-state grammars (sans-IO).

A declarative protocol names an automat machine (``TypeMachineBuilder`` or
``MethodicalMachine``), the framing of each state, the route from frames to inputs, per-state
timeouts and the input that connection loss becomes. This package checks those declarations
against the machine (:class:`Plan`) and runs them per connection (:class:`Engine`: the
connection owns one and is its :class:`Host`); the Twisted-style face is
:class:`statewire.declarative.MachineProtocol`.
"""

from statewire.machine._arguments import arguments
from statewire.machine._engine import Engine
from statewire.machine._graph import Graph, Transition, graph_of, is_declared
from statewire.machine._host import Host
from statewire.machine._observe import Observer, TransitionCallback, observe, unobserve
from statewire.machine._plan import Plan
from statewire.machine._routes import (
    ByKey,
    Route,
    Timeout,
    ToInput,
    by_key,
    by_verb,
    input_name,
)
from statewire.machine._styles import forward
from statewire.machine._waiting import DeferredFuture
from statewire.machine.errors import (
    BadArguments,
    DefinitionError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UnexpectedInput,
    UnknownKey,
    UnroutableFrame,
)

__all__ = [
    "BadArguments",
    "ByKey",
    "DeferredFuture",
    "DefinitionError",
    "Engine",
    "Graph",
    "Host",
    "LocalProtocolError",
    "Observer",
    "Plan",
    "ProtocolError",
    "RemoteProtocolError",
    "Route",
    "Timeout",
    "ToInput",
    "Transition",
    "TransitionCallback",
    "UnexpectedInput",
    "UnknownKey",
    "UnroutableFrame",
    "arguments",
    "by_key",
    "by_verb",
    "forward",
    "graph_of",
    "input_name",
    "is_declared",
    "observe",
    "unobserve",
]
