"""Switchable faults: the ways the real service fails, on demand.

:class:`Faults` is what a test edits (``sb.faults.error_rate = 0.2``); changes apply from
the next request on. :class:`FaultPlanner` turns it into a :class:`Plan` for each request,
under a lock, so that "the next N requests" faults count exactly even when many requests
arrive at once, and so that rate faults draw from one RNG seeded by ``fault_seed``: the
sequence of outcomes restarts whenever a fault setting changes, and a single-threaded
client sees the same outcomes on every run.

Faults that depend on the request itself (a poisoned test in a page window, 524 for a
``bugs`` request with many ids, ``unauthorized``) are applied by the server, after routing.
So is the moving list (``list_moves_every``): :meth:`FaultPlanner.list_move` says which
``exploratory_tests`` request moves the list and how, and the world applies the movement
under its own lock before it answers that request.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .load import Capacity
from .replies import Reply, api_error, garbage, gateway_page, rate_limited

__all__ = ["MOVE_KINDS", "FaultPlanner", "Faults", "Movement", "Plan", "PlannedMove"]

# The ways the exploratory_tests list can move between two page requests.
MOVE_KINDS = (
    "insert",
    "insert_head",
    "insert_unscheduled",
    "move_up",
    "move_down",
    "delete_above",
)


def parse_move_kinds(value: str) -> tuple[str, ...]:
    """The kinds of a comma-separated ``list_moves`` value; ValueError for unknown ones."""
    if not isinstance(value, str):
        raise ValueError(f"list_moves must be a comma-separated string, not {value!r}")
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(MOVE_KINDS))
    if not kinds or unknown:
        raise ValueError(f"list_moves takes kinds out of {', '.join(MOVE_KINDS)}; got {value!r}")
    return kinds


def _positive_or_none(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 1)


@dataclass
class Faults:
    """Fault switches of a sandbox; all off by default.

    Rates are fractions of requests (0.0-1.0); ``*_next`` counters count down as requests
    consume them. Example::

        sb.faults.rate_limit_next = 2          # the next two requests answer 429
        sb.set_faults(error_rate=0.1, fault_seed=7)
        sb.set_faults(list_moves_every=3, list_moves="insert,move_up")

    ``capacity_rps``, ``capacity_in_flight`` and ``capacity_burst`` switch on the load model
    (``load.py``): beyond a rate it answers 429 with ``Retry-After``, beyond requests in
    flight 503, and latency grows as it fills::

        sb.set_faults(capacity_rps=20, latency_ms=300)

    ``list_moves_every=N`` moves a product's list before answering every N-th
    ``exploratory_tests`` request of the sandbox (counted from the last fault change;
    requests answered by another fault first do not count), by one movement of a kind
    drawn from ``list_moves`` (see :data:`MOVE_KINDS` and ``Sandbox.movements``).
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
    list_moves_every: int | None = None
    list_moves: str = ",".join(MOVE_KINDS)
    capacity_rps: float | None = None
    capacity_in_flight: int | None = None
    capacity_burst: float | None = None
    ignore_paging: bool = False  # every exploratory_tests page answers page 1 (staging hosts)
    fault_seed: int = 0
    # Bookkeeping, not switches: requests seen since fail_after was set, and a counter of
    # assignments that tells the planner to restart its RNG.
    _since_fail_after: int = field(default=0, init=False, repr=False, compare=False)
    _version: int = field(default=0, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "list_moves":
            parse_move_kinds(value)
        if name == "list_moves_every" and not _positive_or_none(value):
            raise ValueError(f"list_moves_every must be None or an int >= 1, not {value!r}")
        if name.startswith("capacity_"):
            Capacity(**{name.removeprefix("capacity_"): value})  # raises for a bad value
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
class Movement:
    """One movement of a product's list, as ``Sandbox.movements`` records it.

    ``kind`` is one of :data:`MOVE_KINDS`; ``test_id`` the test added, moved or deleted;
    ``request_number`` counts the ``exploratory_tests`` requests the sandbox answered
    (1 for the first since it was made) and names the one the movement came before.
    """

    kind: str
    product_id: int
    test_id: int
    request_number: int


@dataclass(frozen=True)
class PlannedMove:
    """A movement the planner has decided on: its kind, a seed for its choices, the request."""

    kind: str
    seed: int
    request_number: int


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

    def __init__(
        self,
        faults: Faults,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` gives the service's time (epoch seconds), for Retry-After dates;
        ``monotonic`` the time the load model's bucket fills with."""
        self.faults = faults
        self._clock = clock
        self._monotonic = monotonic
        self._capacity = self._make_capacity()
        self._lock = threading.Lock()
        self._rng = random.Random(faults.fault_seed)
        # Movements draw from their own RNG, so switching them on leaves the rate faults'
        # sequence as it was.
        self._moves_rng = random.Random(f"list-moves/{faults.fault_seed}")
        self._list_since_change = 0
        self._list_requests = 0
        self._seen: tuple[int, int] = (id(faults), faults._version)

    def _make_capacity(self) -> Capacity:
        f = self.faults
        return Capacity(
            f.capacity_rps, f.capacity_in_flight, f.capacity_burst, now=self._monotonic()
        )

    def _restart_on_change(self) -> None:
        """Restart the RNGs and the list-request count when a fault setting changed."""
        f = self.faults
        if (id(f), f._version) != self._seen:
            c = self._capacity
            if (c.rps, c.in_flight, c.burst) != (
                f.capacity_rps,
                f.capacity_in_flight,
                f.capacity_burst or max(1.0, f.capacity_rps or 1.0),
            ):
                self._capacity = self._make_capacity()  # a new bucket, full
            self._rng.seed(f.fault_seed)
            self._moves_rng.seed(f"list-moves/{f.fault_seed}")
            self._list_since_change = 0
            self._seen = (id(f), f._version)

    def list_move(self) -> PlannedMove | None:
        """Count one ``exploratory_tests`` request; the movement due before it, if any."""
        with self._lock:
            self._restart_on_change()
            self._list_requests += 1
            self._list_since_change += 1
            f = self.faults
            every = f.list_moves_every
            if every is None or self._list_since_change % every:
                return None
            kind = self._moves_rng.choice(parse_move_kinds(f.list_moves))
            return PlannedMove(kind, self._moves_rng.getrandbits(64), self._list_requests)

    def plan(self, in_flight: int = 1) -> Plan:
        """The plan for the next request, ``in_flight`` handled now (itself included);
        consumes ``*_next`` counters."""
        with self._lock:
            self._restart_on_change()
            f = self.faults
            rng = self._rng
            slowdown = 1.0
            if self._capacity.active:
                # The gateway's own refusals come first, at once, and count as no other fault.
                admission = self._capacity.admit(self._monotonic(), in_flight)
                if admission.status == 503:
                    return Plan(reply=api_error(503, "Service Unavailable (over capacity)"))
                if admission.status == 429:
                    wait = admission.retry_after
                    return Plan(reply=rate_limited(wait, f.retry_after_format, self._clock()))
                slowdown = admission.slowdown
            delay = max(0.0, f.latency_ms) / 1000
            if f.latency_jitter_ms > 0:
                delay += rng.random() * f.latency_jitter_ms / 1000
            delay *= slowdown
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
            reply = rate_limited(f.retry_after, f.retry_after_format, self._clock())
            return Plan(delay, reply=reply)
        if kind == "garbage":
            return Plan(delay, reply=garbage(self._rng))
        status = self._rng.choice((500, 502, 503, 504))
        if status in (502, 504):
            return Plan(delay, reply=gateway_page(status))
        message = "Internal Server Error" if status == 500 else "Service Unavailable"
        return Plan(delay, reply=api_error(status, message))
