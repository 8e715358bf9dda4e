"""Time passing in an evolving sandbox: what happens to the account, hour by hour, after its
anchor, so that a mirror synced again later sees real news and never a re-dating.

``Sandbox(evolve=True)`` (the bundled sandbox of a mirror that is not pinned) keeps its data
where its anchor put it and lets the clock move it on: each whole hour that passes (with
real time or ``sb.advance``) is played once, in order, from its own RNG, so the same anchor
and hours give the same account whenever they are played::

    sb = Sandbox(anchor="2025-06-02T12:00:00Z", evolve=True)
    sb.advance(6 * 3600)
    sb.timeline()        # [Event(at=..., entity='test', id=..., kind='added'), ...]

What an hour brings, as on a busy account:

- a running test whose end has come is ``locked``; a day after its end it is
  ``customer_finalized``; three days after, ``archived``;
- now and then a new test starts (created and started that hour, ending 2 hours to 30 days
  later), with the bugs the generator gives a new test;
- testers report bugs on running tests (``forwarded``, created that hour);
- open bugs are decided, 2 hours to 12 days after they were reported: accepted or rejected,
  and one still open after 10 days is accepted automatically (``auto_accepted: true``).

``timeline()`` is the oracle of tests: every change the sandbox made itself, with its time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .data import DAY, HOUR, format_time
from .text import Dice

if TYPE_CHECKING:
    from .state import World

__all__ = ["Event", "Timeline"]

AUTO_ACCEPT_AFTER = 10 * DAY
_NEW_TEST_CHANCE = 0.25  # an hour: about six new tests a day
_BUGS_AN_HOUR = (0, 0, 1, 1, 2)  # reported over all running tests
_ENDED = ("locked", 0), ("customer_finalized", DAY), ("archived", 3 * DAY)
_DECIDED = ("accepted", "rejected")


@dataclass(frozen=True)
class Event:
    """One change the sandbox made: ``kind`` is ``added`` or ``changed`` (``field`` and the
    values then say what)."""

    at: int
    entity: str
    id: int
    kind: str
    field: str | None = None
    old: Any = None
    new: Any = None


class Timeline:
    """The hours after the anchor, played once each (``catch_up``), and what they changed."""

    def __init__(self, world: World, seed: int, anchor: int) -> None:
        self._world = world
        self._seed = seed
        self.played = anchor - anchor % HOUR  # every hour up to here is played
        self.events: list[Event] = []
        self._due: list[tuple[int, int, str, int, str, bool]] = []  # (at, seq, entity, id, ...)
        self._seq = 0
        self._running: set[int] = set()
        followed = []
        for test_id, status, end in world.open_tests():
            self._follow_test(test_id, status, end)
            followed.append(test_id)
        for test_id in followed:
            for bug_id, status, reported in world.bugs_of(test_id):
                if status not in _DECIDED:
                    rng = Dice(f"testio-sandbox/decide/{seed}/{bug_id}")
                    self._plan_decision(bug_id, reported, rng)

    def catch_up(self, now: float) -> None:
        """Play every whole hour up to ``now`` not played yet (the caller holds the lock)."""
        while self.played + HOUR <= now:
            self.played += HOUR
            self._hour(self.played)

    # -- one hour ------------------------------------------------------------------------

    def _hour(self, hour: int) -> None:
        rng = Dice(f"testio-sandbox/timeline/{self._seed}/{hour}")
        while self._due and self._due[0][0] <= hour:
            at, _, entity, item, value, auto = heapq.heappop(self._due)
            if entity == "test":
                self._test_status(at, item, value)
            else:
                self._decide(at, item, value, auto)
        if rng.random() < _NEW_TEST_CHANCE:
            self._new_test(hour, rng)
        running = sorted(self._running)
        for _ in range(rng.pick(_BUGS_AN_HOUR) if running else 0):
            self._new_bug(hour - rng.between(0, HOUR - 60), rng.pick(running), rng)

    def _push(self, at: int, entity: str, item: int, value: str, auto: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, entity, item, value, auto))

    def _follow_test(self, test_id: int, status: str, end: int | None) -> None:
        """Plan the statuses a test still passes through after its end."""
        if end is None:
            return
        if status == "running":
            self._running.add(test_id)
        passed = [name for name, _ in _ENDED]
        start = passed.index(status) + 1 if status in passed else 0
        for name, after in _ENDED[start:]:
            self._push(max(end + after, self.played + HOUR), "test", test_id, name)

    def _test_status(self, at: int, test_id: int, status: str) -> None:
        old = self._world.test_status(test_id)
        self._running.discard(test_id)  # ended, whatever happens next
        if old is None or old in ("archived", "cancelled"):
            return  # deleted, or finished by someone else
        self._world.update_test(test_id, {"status": status})
        self.events.append(Event(at, "test", test_id, "changed", "status", old, status))

    def _new_test(self, hour: int, rng: Dice) -> None:
        products = self._world.product_sizes()
        if not products:
            return
        ids, sizes = zip(*products, strict=True)
        total = sum(sizes) or len(sizes)
        roll = rng.random() * total
        chosen = ids[-1]
        for product_id, size in products:
            roll -= size or 1
            if roll < 0:
                chosen = product_id
                break
        created = hour - rng.between(0, HOUR - 60)
        (test_id,) = self._world.add_tests(chosen, 1, "running", "sorted", at=created)
        self.events.append(Event(created, "test", test_id, "added"))
        end = self._world.test_end(test_id)
        self._follow_test(test_id, "running", end)
        for bug_id, status, reported in self._world.bugs_of(test_id):
            self.events.append(Event(reported, "bug", bug_id, "added"))
            if status not in _DECIDED:
                self._plan_decision(bug_id, reported, rng)

    def _new_bug(self, at: int, test_id: int, rng: Dice) -> None:
        if self._world.test_status(test_id) != "running":
            self._running.discard(test_id)
            return
        (bug_id,) = self._world.add_bugs(test_id, 1)
        fields = {
            "status": "forwarded",
            "created_at": format_time(at, None),
            "auto_accepted": False,
        }
        self._world.update_bug(bug_id, fields)
        self.events.append(Event(at, "bug", bug_id, "added"))
        self._plan_decision(bug_id, at, rng)

    def _plan_decision(self, bug_id: int, reported: int, rng: Dice) -> None:
        wait = rng.between(2 * HOUR, 12 * DAY)
        if wait >= AUTO_ACCEPT_AFTER:
            self._push(reported + AUTO_ACCEPT_AFTER, "bug", bug_id, "accepted", auto=True)
        else:
            verdict = "accepted" if rng.random() < 0.8 else "rejected"
            self._push(reported + wait, "bug", bug_id, verdict)

    def _decide(self, at: int, bug_id: int, status: str, auto: bool) -> None:
        old = self._world.bug_status(bug_id)
        if old is None or old in _DECIDED:
            return  # deleted, or decided by someone else
        self._world.update_bug(bug_id, {"status": status, "auto_accepted": auto})
        self.events.append(Event(at, "bug", bug_id, "changed", "status", old, status))
