"""The runtime (layer 5): connections, transports and pollers on asyncio.

The map, from the bottom up (each module imports only the ones above it in this list):

* :mod:`~statewire.runtime.limits` -- the flow-control marks (``HIGH_WATER``,
  ``LOW_WATER``), the default ``CLOSE_TIMEOUT``, and the record of a connection's write
  deadlines (``WriteLimits``).
* :mod:`~statewire.runtime.kernel` -- what the transports ask of the kernel about a socket:
  unacknowledged bytes, closing with a reset.
* :mod:`~statewire.runtime.naming` -- how log records name a connection and a callback.
* :mod:`~statewire.runtime.deadlines` -- ``close_timeout``, ``write_timeout`` and
  ``peer_progress``: the base class of every connection.
* :mod:`~statewire.runtime.connection` -- ``Connection``, what both transports share
  (coalesced writes, flow control, producers, closing, guarded user calls, the
  ``startTLS`` API), and ``Owner``, what a connection belongs to.
* :mod:`~statewire.runtime.pollers` -- ``Poller``: one epoll set per loop, or the loop's
  own readers; ``Watched``, what a poller calls back.
* :mod:`~statewire.runtime.socket_transport` -- ``SocketTransport``, statewire's own
  transport for the TCP, UNIX and TLS connections its ports accept and the TCP and UNIX
  ones it connects, and its TLS (a sans-IO :class:`~statewire._tls.TLSSession`).
* :mod:`~statewire.runtime.asyncio_transport` -- ``Transport`` over an asyncio transport
  and its ``Bridge`` (``connectSSL``, native transports), and its STARTTLS (the loop's
  ``start_tls``).

Beside them, for the reactor:

* :mod:`~statewire.runtime.delayed_call` -- ``DelayedCall`` (``callLater``) and the checks
  that refuse delays and callbacks that would corrupt the loop.
* :mod:`~statewire.runtime.listening` -- listening TCP and UNIX sockets, bound at once,
  or handed to us already listening (checked the same way).
* :mod:`~statewire.runtime.ports` -- ``Port`` (accepting, stopping) and ``Counted``, an
  owner whose connections the reactor counts.
* :mod:`~statewire.runtime.connecting` -- client sockets connected with the loop, to be
  served by the socket transport.
* :mod:`~statewire.runtime.connector` -- ``Connector``, a client connection attempt
  (Twisted's ``IConnector``).

Ports and connectors reach the reactor through its public registry (``connections``,
``ports``, ``connectors``), ``poller()``, ``loop`` and ``stopping``. The reactor
(:mod:`statewire._reactor`: listening, connecting, time, run and stop) sits on top of all
these; ``statewire._transport`` re-exports the transports' names under their old path, and
``statewire._reactor`` still exports ``Port``, ``Connector``, ``DelayedCall``,
``AlreadyCalled`` and ``AlreadyCancelled``.
"""
