"""A histogram as Prometheus counts one: observations counted into buckets by their upper
bound (:mod:`statewire.metrics` times HTTP exchanges with it)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence

#: the histogram's bucket bounds, in seconds (the default buckets of Prometheus's Go client)
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """Observations counted into buckets by their upper bound (one count per bucket, not
    cumulative: :meth:`cumulative` adds them up as Prometheus writes them)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        pairs = zip(self.bounds, self.bounds[1:], strict=False)
        if not all(map(math.isfinite, self.bounds)) or any(a >= b for a, b in pairs):
            raise ValueError(f"bounds are finite and rising (+Inf is added), not {bounds!r}")
        self.counts = [0] * (len(self.bounds) + 1)  # (the last: over every bound)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound it does not pass."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """``(le, count)`` a bucket, as Prometheus's ``_bucket`` samples: each bound with
        the observations at or under it, then ``+Inf`` with all of them."""
        total = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            yield repr(bound), total
        yield "+Inf", self.count


__all__ = ["DURATION_BUCKETS", "Histogram"]
