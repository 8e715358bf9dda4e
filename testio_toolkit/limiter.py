"""How many requests a client keeps in flight: a loss-based AIMD limit, as TCP does.

Usage::

    >>> limiter = Limiter()                  # starts at 8, moves within 2..64
    >>> ticket = limiter.sent(in_flight=1)   # a request goes out (1 in flight, itself)
    >>> limiter.succeeded(ticket)            # it answered: the limit may grow
    >>> limiter.overloaded(ticket)           # or it met 429/503/504/524, a timeout, a drop
    >>> limiter.limit                        # requests allowed in flight now
    >>> limiter.figures()                    # LimiterFigures(start=8, peak=12, end=9, ...)

The shape is TCP's congestion control (RFC 5681, with CUBIC's gentler cut of RFC 9438) and
the AIMD limit of client-side limiters such as Netflix's concurrency-limits:

- **slow start**: until the first sign of overload, every success adds one (the limit
  doubles each round trip), so a run finds the service's capacity in a few round trips;
- **additive increase**: after it, every success adds ``ALPHA / limit`` (half a request
  per round trip: with a cut to 70%, the pairing RFC 8312 calls TCP-friendly) up to 85%
  of the limit of the latest cut, where the service said "too much"; from there on a
  quarter of that (``PROBE``), as CUBIC's plateau does: the run stays just under the
  service's capacity instead of running into it every few round trips (which, with small
  limits against a rate limit, answered over 3% of the requests 429);
- **growth only when in use**: a request sent while fewer than half the allowed requests
  were in flight says nothing about capacity (the run was not pushing), so it adds nothing;
- **multiplicative decrease, once per round trip**: a sign of overload cuts the limit to
  ``backoff`` times itself, once per congestion event. A request sent before the latest cut
  belongs to the event that caused it (it was in flight, or about to be, when the service
  was overloaded), so its failure does not cut again: a burst of 429s within one round trip
  is one decrease. No clock is needed: requests are numbered as they are sent.
- **a storm of 429s is one event**: a 429 carries its own pacing (``Retry-After``, which the
  client honours as a pause of every request), so after a cut on a 429 the limit is cut
  again for a 429 only once a request sent after the cut has succeeded. Otherwise a minute
  of 429s would cut once a second down to the floor, and the run would crawl back from
  there when the storm ends.

Nothing here knows TestIO, waits or does I/O: which statuses are signs of overload is
``is_overload``, the client reports each answer and does the waiting (slots, the shared
``Retry-After`` pause). The limit is a float inside; callers see ``limit``, its whole part
within the bounds.

Why hand-written: the PyPI packages for AIMD in asyncio (ace-concurrency,
adaptive-concurrency, aimd-limiter) are 0.1 releases with little use, and a limiter that
brings its own semaphore would sit beside the client's priority slots and shared pause
rather than drive them. The controller itself is about a hundred lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_START",
    "OVERLOAD_STATUSES",
    "Limiter",
    "LimiterFigures",
    "Ticket",
    "is_overload",
]

DEFAULT_START = 8  # the fixed limit of earlier versions: a safe first guess
DEFAULT_BOUNDS = (2, 64)
BACKOFF = 0.7  # CUBIC's beta: a cut keeps 70% (Reno's 50% wastes more after each event)
ALPHA = 0.5  # additive increase per round trip; 3 * (1 - 0.7) / (1 + 0.7) = 0.53 in RFC 8312
PROBE = ALPHA / 4  # ... and from PLATEAU times the limit of the latest cut on
PLATEAU = 0.85

# Answers that mean "too much at once": rate-limited, unavailable, gateway timeouts. A 500 is
# one broken record (the listing's salvage path), a 502 a gateway hiccup: no signal of load.
OVERLOAD_STATUSES = frozenset({429, 503, 504, 524})


def is_overload(status_code: int | None) -> bool:
    """``is_overload(429)`` -> True; ``is_overload(500)`` -> False.

    ``None`` stands for no answer at all (a timeout, a dropped connection), which is
    overload too; the caller leaves out failures that say nothing about load (no
    connection could be made to a host that never answered).
    """
    return status_code is None or status_code in OVERLOAD_STATUSES


class Ticket(NamedTuple):
    """One request sent: its number in send order, and whether the limit was in use."""

    number: int
    in_use: bool


@dataclass(frozen=True)
class LimiterFigures:
    """What a run's limiter did: ``result.limiter`` (``SyncResult``).

    ``start``/``peak``/``end``: requests allowed in flight at the start, at most, at the end;
    ``decreases``: cuts (congestion events); ``rate_limited``: 429 answers;
    ``paused_seconds``: time every request waited out a ``Retry-After``;
    ``pinned``: the limit was fixed (``ClientOptions(concurrency=N)``) and never moved.
    """

    start: int
    peak: int
    end: int
    decreases: int = 0
    rate_limited: int = 0
    paused_seconds: float = 0.0
    pinned: bool = False

    def short(self) -> str:
        """``'limit 8→24→17 (2 cuts, 5 rate-limited, paused 2.0s)'`` or ``'limit 8 (pinned)'``."""
        if self.pinned:
            moves = f"limit {self.end} (pinned"
        else:
            cuts = "1 cut" if self.decreases == 1 else f"{self.decreases} cuts"
            moves = f"limit {self.start}→{self.peak}→{self.end} ({cuts}"
        extra = ""
        if self.rate_limited:
            extra += f", {self.rate_limited} rate-limited"
        if self.paused_seconds:
            extra += f", paused {self.paused_seconds:.1f}s"
        return f"{moves}{extra})"


class Limiter:
    """The limit of requests in flight, moved by what the answers say (see the module).

    ``Limiter(start=8, bounds=(2, 64))``; ``Limiter.pinned(4)`` never moves.
    """

    def __init__(
        self,
        start: int = DEFAULT_START,
        bounds: tuple[int, int] = DEFAULT_BOUNDS,
        *,
        backoff: float = BACKOFF,
    ) -> None:
        low, high = bounds
        if not (1 <= low <= high):
            raise ValueError(f"limiter bounds must be 1 <= low <= high, got {bounds!r}")
        if not (0.0 < backoff < 1.0):
            raise ValueError(f"limiter backoff must be between 0 and 1, got {backoff!r}")
        self.low, self.high = low, high
        self.backoff = backoff
        self._limit = float(min(max(start, low), high))
        self._slow_start = True
        self._sent = 0
        # Requests numbered up to this one were sent before the latest cut.
        self._cut_covers = 0
        self._succeeded_since_cut = True
        self._cut_at = math.inf  # the limit just before the latest cut
        self._start = self.limit
        self._peak = self.limit
        self.decreases = 0
        self.rate_limited = 0
        self.paused_seconds = 0.0

    @classmethod
    def pinned(cls, limit: int) -> Limiter:
        """A limit that never moves: ``Limiter.pinned(4)`` (``ClientOptions(concurrency=4)``)."""
        return cls(limit, (limit, limit))

    def __repr__(self) -> str:
        return f"<Limiter {self.limit} in {self.low}..{self.high}>"

    @property
    def is_pinned(self) -> bool:
        return self.low == self.high

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return min(max(math.floor(self._limit), self.low), self.high)

    def resume(self, start: int) -> None:
        """Start again from ``start`` (the limit an earlier run learned), within the bounds;
        counts so far are kept."""
        self._limit = float(min(max(start, self.low), self.high))
        self._start = self._peak = self.limit

    def sent(self, in_flight: int) -> Ticket:
        """A request goes out with ``in_flight`` requests in flight (itself included)."""
        self._sent += 1
        return Ticket(self._sent, in_use=2 * in_flight >= self.limit)

    def succeeded(self, ticket: Ticket) -> None:
        """The request answered: grow, if the limit was in use when it went out."""
        if ticket.number > self._cut_covers:
            self._succeeded_since_cut = True
        if not ticket.in_use:
            return
        if self._slow_start:
            step = 1.0
        else:
            near = self._limit >= PLATEAU * self._cut_at
            step = (PROBE if near else ALPHA) / self._limit
        self._limit = min(self._limit + step, float(self.high))
        self._peak = max(self._peak, self.limit)

    def overloaded(self, ticket: Ticket, *, rate_limited: bool = False) -> bool:
        """The request met a sign of overload; True when this cut the limit (the first
        such answer of a congestion event), False for one sent before the latest cut."""
        if rate_limited:
            self.rate_limited += 1
        if ticket.number <= self._cut_covers:
            return False
        if rate_limited and not self._succeeded_since_cut:
            return False  # the same storm of 429s: the pause paces it
        self._cut_covers = self._sent
        self._succeeded_since_cut = False
        self._slow_start = False
        before = self.limit
        self._cut_at = self._limit
        self._limit = max(self._limit * self.backoff, float(self.low))
        if self.limit < before:
            self.decreases += 1
            return True
        return False

    def paused(self, seconds: float) -> None:
        """Every request waited ``seconds`` more for a ``Retry-After``."""
        self.paused_seconds += max(0.0, seconds)

    def figures(self) -> LimiterFigures:
        """What the limiter did so far (see ``LimiterFigures``)."""
        return LimiterFigures(
            start=self._start,
            peak=self._peak,
            end=self.limit,
            decreases=self.decreases,
            rate_limited=self.rate_limited,
            paused_seconds=round(self.paused_seconds, 3),
            pinned=self.is_pinned,
        )
