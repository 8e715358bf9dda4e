"""Switchable faults: the ways the real service fails, on demand.

:class:`Faults` is what a test edits (``sb.faults.error_rate = 0.2``); changes apply from
the next request on. :class:`FaultPlanner` turns it into a :class:`Plan` for each request,
under a lock, so that "the next N requests" faults count exactly even when many requests
arrive at once, and so that rate faults draw from one RNG seeded by ``fault_seed``: the
sequence of outcomes restarts whenever a fault setting changes, and a single-threaded
client sees the same outcomes on every run.

Faults that depend on the request itself (a poisoned test in a page window, 524 for a
``bugs`` request with many ids, ``unauthorized``) are applied by the server, after routing.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .replies import Reply, api_error, garbage, gateway_page, rate_limited

__all__ = ["FaultPlanner", "Faults", "Plan"]


@dataclass
class Faults:
    """Fault switches of a sandbox; all off by default.

    Rates are fractions of requests (0.0-1.0); ``*_next`` counters count down as requests
    consume them. Example::

        sb.faults.rate_limit_next = 2          # the next two requests answer 429
        sb.set_faults(error_rate=0.1, fault_seed=7)
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    poisoned_test_ids: set[int] = field(default_factory=set)
    rate_limit_next: int = 0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    error_rate: float = 0.0
    fail_after: int | None = None
    bugs_524_over: int | None = None
    hang_next: int = 0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_next: int = 0
    drop_rate: float = 0.0
    garbage_next: int = 0
    garbage_rate: float = 0.0
    unauthorized: bool = False
    fault_seed: int = 0
    # Bookkeeping, not switches: requests seen since fail_after was set, and a counter of
    # assignments that tells the planner to restart its RNG.
    _since_fail_after: int = field(default=0, init=False, repr=False, compare=False)
    _version: int = field(default=0, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name.startswith("_"):
            return
        if name == "fail_after":
            object.__setattr__(self, "_since_fail_after", 0)
        object.__setattr__(self, "_version", self._version + 1)

    @classmethod
    def switch_names(cls) -> list[str]:
        """The names a caller may set (every public field)."""
        return [f.name for f in fields(cls) if not f.name.startswith("_")]


@dataclass(frozen=True)
class Plan:
    """What the server does with one request before (or instead of) answering it.

    ``delay`` and ``hang`` are seconds to sleep; ``drop`` closes the connection without
    a response; ``reply`` replaces the real answer.
    """

    delay: float = 0.0
    drop: bool = False
    hang: float = 0.0
    reply: Reply | None = None


class FaultPlanner:
    """Decides, per request and thread-safely, which faults strike."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._rng = random.Random(faults.fault_seed)
        self._seen: tuple[int, int] = (id(faults), faults._version)

    def plan(self) -> Plan:
        """The plan for the next request; consumes ``*_next`` counters."""
        with self._lock:
            f = self.faults
            if (id(f), f._version) != self._seen:
                self._rng.seed(f.fault_seed)
                self._seen = (id(f), f._version)
            rng = self._rng
            delay = max(0.0, f.latency_ms) / 1000
            if f.latency_jitter_ms > 0:
                delay += rng.random() * f.latency_jitter_ms / 1000
            if f.fail_after is not None:
                # Bookkeeping writes bypass __setattr__: they must not restart the RNG.
                object.__setattr__(f, "_since_fail_after", f._since_fail_after + 1)
                if f._since_fail_after > f.fail_after:
                    return Plan(delay, reply=api_error(503, "Service Unavailable"))
            for name in ("drop_next", "hang_next", "rate_limit_next", "garbage_next"):
                left = getattr(f, name)
                if left > 0:
                    object.__setattr__(f, name, left - 1)
                    return self._strike(name.removesuffix("_next"), delay)
            bands = (
                ("drop", f.drop_rate),
                ("hang", f.hang_rate),
                ("rate_limit", f.rate_limit_rate),
                ("error", f.error_rate),
                ("garbage", f.garbage_rate),
            )
            if any(rate > 0 for _, rate in bands):
                # One draw per request, bands side by side: each rate is exactly the
                # fraction of requests it hits, whatever the others are.
                roll = rng.random()
                for kind, rate in bands:
                    if roll < rate:
                        return self._strike(kind, delay)
                    roll -= max(0.0, rate)
            return Plan(delay)

    def _strike(self, kind: str, delay: float) -> Plan:
        f = self.faults
        if kind == "drop":
            return Plan(delay, drop=True)
        if kind == "hang":
            return Plan(delay, hang=max(0.0, f.hang_seconds))
        if kind == "rate_limit":
            return Plan(delay, reply=rate_limited(f.retry_after, f.retry_after_format))
        if kind == "garbage":
            return Plan(delay, reply=garbage(self._rng))
        status = self._rng.choice((500, 502, 503, 504))
        if status in (502, 504):
            return Plan(delay, reply=gateway_page(status))
        message = "Internal Server Error" if status == 500 else "Service Unavailable"
        return Plan(delay, reply=api_error(status, message))
