"""``statewire serve --limit-max-requests N``: a process that has taken N requests makes
way for a fresh one, as uvicorn's option of that name (and gunicorn's ``max_requests``)
does, for an application whose memory grows with the requests it serves.

The count is the HTTP factory's: every request whose head was read (a WebSocket
handshake too), counted as its handler starts. The N-th calls ``reached`` once, and
the process goes on serving until told otherwise:

* serving alone, it stops gracefully (as at ``SIGTERM``: the requests under way are
  answered) and exits 0, for a process manager (systemd, Kubernetes) to start it again;
* as a worker of ``--workers``, it asks its supervisor to replace it: the supervisor starts
  a new worker in its slot and, once that one accepts, drains this one as a reload does,
  so no connection is refused meanwhile (:mod:`statewire.workers`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


def limit_requests(factory: Any, limit: int, reached: Callable[[], None]) -> None:
    """Count ``factory``'s requests (an :class:`~statewire.protocols.http.HTTPFactory`:
    its ``handler`` is wrapped); call ``reached()`` when the ``limit``-th starts."""
    handler = factory.handler
    taken = 0

    def counted(request: Any, response: Any) -> Awaitable[None]:
        nonlocal taken
        taken += 1
        if taken == limit:
            reached()
        result: Awaitable[None] = handler(request, response)
        return result

    factory.handler = counted
