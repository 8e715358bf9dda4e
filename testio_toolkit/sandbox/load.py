"""The sandbox's load model: a service with a capacity, slower as it fills, refusing beyond it.

Switched on with fault switches (``Faults``), off by default::

    sb.set_faults(capacity_rps=20)          # 20 requests a second (a token bucket, 1 s burst)
    sb.set_faults(capacity_in_flight=16)    # 16 requests handled at once, 503 beyond
    sb.set_faults(capacity_rps=20, capacity_burst=5, latency_ms=300)

A request over the rate answers 429 with ``Retry-After`` (the time until the bucket holds a
token again, rounded up to whole seconds as the header's format requires) and one over the
in-flight capacity answers 503, both at once, as a gateway in front of an API refuses
without asking it. An admitted request waits its latency times ``1 + load``, where ``load``
(0..1) is how full the service is: the larger of the share of the in-flight capacity in use
and the share of the bucket spent. So a client pushing harder first sees answers slow down,
then refusals.

``Capacity`` is a plain object with the time passed in, so its decisions are tested
without a server; the server calls it under the planner's lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Admission", "Capacity"]


@dataclass(frozen=True)
class Admission:
    """What the load model says about one request: refused with ``status`` (429, 503) and
    ``retry_after`` seconds, or admitted (``status`` None) at ``slowdown`` times its latency."""

    status: int | None = None
    retry_after: float = 0.0
    slowdown: float = 1.0


class Capacity:
    """A token bucket of ``rps`` a second holding at most ``burst`` (default: one second's
    worth), and at most ``in_flight`` requests at once; ``None`` switches either off.

    >>> cap = Capacity(rps=2, burst=2, now=0.0)
    >>> cap.admit(now=0.0, in_flight=1).status, cap.admit(0.0, 1).status, cap.admit(0.0, 1).status
    (None, None, 429)
    """

    def __init__(
        self,
        rps: float | None = None,
        in_flight: int | None = None,
        burst: float | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        if rps is not None and not (rps > 0 and math.isfinite(rps)):
            raise ValueError(f"capacity_rps must be None or a number > 0, not {rps!r}")
        if in_flight is not None and not (type(in_flight) is int and in_flight >= 1):
            raise ValueError(f"capacity_in_flight must be None or an int >= 1, not {in_flight!r}")
        if burst is not None and not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"capacity_burst must be None or a number >= 1, not {burst!r}")
        self.rps = rps
        self.in_flight = in_flight
        self.burst = burst if burst is not None else max(1.0, rps or 1.0)
        self._tokens = self.burst
        self._at = now

    @property
    def active(self) -> bool:
        return self.rps is not None or self.in_flight is not None

    def _refill(self, now: float) -> None:
        if self.rps is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rps)
        self._at = max(self._at, now)

    def admit(self, now: float, in_flight: int) -> Admission:
        """Judge one request arriving at ``now`` with ``in_flight`` handled (itself included)."""
        if self.in_flight is not None and in_flight > self.in_flight:
            return Admission(503)
        self._refill(now)
        load = 0.0 if self.in_flight is None else min(1.0, in_flight / self.in_flight)
        if self.rps is not None:
            if self._tokens < 1.0:
                return Admission(429, retry_after=(1.0 - self._tokens) / self.rps)
            self._tokens -= 1.0
            load = max(load, 1.0 - self._tokens / self.burst)
        return Admission(slowdown=1.0 + load)
