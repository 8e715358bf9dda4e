"""How a product's test list is read, and the proof that the read is complete.

Usage (the sync engine does this for every product)::

    reader = ListingReader(fetch, max_size=25, on_snapshot=write_rows)
    listing = Listing()
    await reader.read_head(listing.segment(), stop_before="2025-06-01T11:00:00Z")
    listing.evidence()        # [] when the read proves that nothing was missed

The service pages ``exploratory_tests`` by page number, sorted by ``end_at`` (newest first,
ties by id descending, unscheduled tests without ``end_at`` last), and the list moves while it
is read: a test added, deleted or moved above the reader shifts every later item by one,
so a reader either sees an item twice or skips one at a page boundary (``testio-api.md``).
Nothing in a response says that this happened, so this module reads the list in a way that
lets it *see* movement:

- **Windows overlap.** Page ``p`` of size ``s`` covers the offsets ``[(p-1)*s, p*s)``. After
  the first page, every window is chosen (``window_after``) to start on the last offset of
  the one before, so each boundary is read twice. The boundary **joins** when both reads
  put the same test at that offset: nothing was added, removed or moved above it between
  the two reads. Costs about a third more list requests than plain pages of 25 (19 new
  tests a window on average); the list is usually a third of a full read's requests.
- **Evidence** that the list moved: a boundary that does not join (another test at the
  shared offset, or no shared offset at all), a test listed at two offsets, tests out of
  ``end_at`` order in a read that stops early. The engine adds one more: a test it holds
  that is missing from the list but alive on its detail endpoint.
- **Completeness.** A segment is complete when its windows join from its first offset to
  where it stops: the end of the list (a short window), or a window whose last test ended
  before ``stop_before``. A listing without evidence and without unreadable offsets is
  complete for its segments. With evidence, the engine reads again (``MAX_PASSES``) and
  otherwise reports the product ``partial``: it never claims a read it could not check.

What this relies on (stated in CLAUDE.md too): one window's answer is a consistent snapshot;
the order is the documented one. A movement between two reads of a boundary breaks its
join, except when two movements cancel out there (one test moving up across the boundary
while another above it is deleted): with at most one movement between two consecutive
reads of a product, which the engine helps by reading one product's windows one at a time,
the join proves the boundary.

Salvage: a window that answers 500 (one broken record inside, usually) is read again in
smaller overlapping windows, then offset by offset; offsets that still fail are returned as
unreadable, with the error, for the engine to log.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceError
from .rows import to_utc

__all__ = [
    "MAX_PASSES",
    "Listing",
    "ListingReader",
    "Segment",
    "Snapshot",
    "Window",
    "salvage_windows",
    "window_after",
    "window_before",
]

# Reads of one product's list before a moving list is reported instead of proven complete.
MAX_PASSES = 3
# A window that answers 500 is read again in pieces of at most 1/5 of its size, then
# offset by offset (25 -> 5 -> 1, as before the overlapping windows).
SALVAGE_DIVISOR = 5

Fetch = Callable[[int, int], Awaitable[list[dict[str, Any]]]]
"""``await fetch(page, per_page)`` -> the items of that page (ServiceError 500 when broken)."""


@dataclass(frozen=True, order=True)
class Window:
    """The offsets ``[start, start + size)``: page ``start // size + 1`` of size ``size``."""

    start: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.start < 0 or self.start % self.size:
            raise ValueError(f"not a page: {self}")

    @property
    def page(self) -> int:
        return self.start // self.size + 1

    @property
    def end(self) -> int:
        return self.start + self.size


def window_after(end: int, max_size: int) -> Window:
    """The window that goes furthest while still covering offset ``end - 1`` (the last
    offset of the window before), so the two overlap on it.

    >>> window_after(25, 25), window_after(48, 25)
    (Window(start=24, size=24), Window(start=46, size=23))

    Where ``end`` is a multiple of every size up to ``max_size`` (60 for 5; never for 25
    below 26 billion), no such window goes past ``end``: then the smallest larger size that
    does is used.
    """
    if end < 1:
        return Window(0, max_size)
    last = end - 1
    best = Window(last, 1)
    for size in range(2, max_size + 1):
        candidate = Window(last // size * size, size)
        if candidate.end > best.end or (candidate.end == best.end and size > best.size):
            best = candidate
    size = max_size
    while best.end == end:
        size += 1
        best = Window(last // size * size, size)
    return best


def window_before(offset: int, max_size: int) -> Window:
    """The window that reaches furthest back while still covering ``offset``.

    >>> window_before(30, 25)
    Window(start=16, size=16)

    As in ``window_after``, a larger size is used where none up to ``max_size`` reaches back.
    """
    best = Window(offset, 1)
    for size in range(2, max_size + 1):
        candidate = Window(offset // size * size, size)
        if candidate.start < best.start or (candidate.start == best.start and size > best.size):
            best = candidate
    size = max_size
    while best.start == offset > 0:
        size += 1
        best = Window(offset // size * size, size)
    return best


def salvage_windows(failed: Window) -> list[Window]:
    """Smaller windows that cover a window which answered 500, overlapping where they can.

    Offset by offset once the pieces would be single items.
    """
    piece = failed.size // SALVAGE_DIVISOR
    if piece < 2:
        return [Window(offset, 1) for offset in range(failed.start, failed.end)]
    first = max(s for s in range(1, piece + 1) if failed.start % s == 0)
    windows = [Window(failed.start, first)]
    while windows[-1].end < failed.end:
        windows.append(window_after(windows[-1].end, piece))
    return windows


# -- what was read ------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One answered window: the tests at ``start``, ``start + 1``, ... at one moment."""

    window: Window
    items: list[dict[str, Any]]

    @property
    def start(self) -> int:
        return self.window.start

    @property
    def ended(self) -> bool:
        """The list ends inside this window (it was short, or empty)."""
        return len(self.items) < self.window.size

    @property
    def stop(self) -> int:
        """One past the last offset this window saw an item at."""
        return self.start + len(self.items)

    def ids(self) -> Iterator[tuple[int, int]]:
        """(offset, test id) pairs."""
        for offset, item in enumerate(self.items, start=self.start):
            yield offset, int(item["id"])


def sort_key(item: dict[str, Any]) -> tuple[str, int] | None:
    """What the list is ordered by: (UTC end_at, id), descending; None when unscheduled."""
    end_at = to_utc(item.get("end_at"))
    return None if end_at is None else (end_at, int(item["id"]))


def ended_before(item: dict[str, Any], moment: str) -> bool:
    """True for a scheduled test that ended before ``moment`` (UTC text)."""
    end_at = to_utc(item.get("end_at"))
    return end_at is not None and end_at < moment


@dataclass
class Segment:
    """A stretch of the list read window after window: the windows must join."""

    snapshots: list[Snapshot] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)  # offset -> error
    reached_end: bool = False
    stopped_early: bool = False  # the stop rule ended it, which relies on end_at order
    unfinished: str | None = None  # why it could not be read to its end

    def evidence(self) -> list[str]:
        """Why this segment does not prove that nothing was skipped (empty: it does)."""
        found: list[str] = [self.unfinished] if self.unfinished else []
        # Empty windows only say where the list ended when they were read: nothing to join.
        ordered = sorted((s for s in self.snapshots if s.items), key=lambda s: (s.start, -s.stop))
        # Each window joins the one that reaches furthest among those that start before it
        # (windows inside another, as salvage pieces or a larger window at the same start
        # can be, must agree with it too).
        reach: Snapshot | None = None
        for snapshot in ordered:
            if reach is not None:
                found.extend(self._join(reach, snapshot))
            if reach is None or snapshot.stop > reach.stop:
                reach = snapshot
        if self.stopped_early:
            for snapshot in ordered:
                keys = [k for k in map(sort_key, snapshot.items) if k is not None]
                if any(a < b for a, b in itertools.pairwise(keys)):
                    found.append(f"tests at offset {snapshot.start}+ are not in end_at order")
        return found

    def _join(self, before: Snapshot, after: Snapshot) -> list[str]:
        shared = range(after.start, min(before.stop, after.stop))
        if not shared:
            near = range(before.stop - 1, after.start + 1)
            if any(offset in self.unreadable for offset in near):
                return []  # the unreadable offset is reported on its own
            return [f"the windows at offsets {before.start} and {after.start} do not overlap"]
        left = dict(before.ids())
        right = dict(after.ids())
        for offset in shared:
            if left[offset] != right[offset]:
                return [f"offset {offset} held test {left[offset]}, then test {right[offset]}"]
        return []


@dataclass
class Listing:
    """Every segment one pass read, and what they prove together."""

    segments: list[Segment] = field(default_factory=list)

    def segment(self) -> Segment:
        """Start a new segment (the head, or the tail of unscheduled tests)."""
        segment = Segment()
        self.segments.append(segment)
        return segment

    @property
    def unreadable(self) -> dict[int, str]:
        """Offsets that could not be read, with the error."""
        return {o: e for s in self.segments for o, e in s.unreadable.items()}

    def order(self) -> dict[int, int]:
        """Offset -> test id, as last read."""
        return {o: i for s in self.segments for snap in s.snapshots for o, i in snap.ids()}

    def seen(self) -> set[int]:
        return {i for s in self.segments for snap in s.snapshots for _, i in snap.ids()}

    def evidence(self) -> list[str]:
        """Why this pass does not prove the list complete; empty when it does."""
        found = [reason for s in self.segments for reason in s.evidence()]
        offsets: dict[int, int] = {}
        for segment in self.segments:
            for snapshot in segment.snapshots:
                for offset, test_id in snapshot.ids():
                    if offsets.setdefault(test_id, offset) != offset:
                        found.append(
                            f"test {test_id} was listed at offsets {offsets[test_id]} and {offset}"
                        )
                        offsets[test_id] = offset
        return found


# -- reading ------------------------------------------------------------------------------

# Times a tail read may turn round (forward while windows are full, back while they are
# empty) before it reports that the end of the list keeps moving.
MAX_TAIL_TURNS = 4


@dataclass(frozen=True)
class _Read:
    """Where a read window left the list: did it end there, and its last readable test."""

    ended: bool
    last: dict[str, Any] | None


class ListingReader:
    """Reads segments of one product's list with ``fetch``, one window at a time.

    ``on_snapshot`` is called with every answered window as it arrives (the engine writes
    its tests at once). Windows are read one after the other: a boundary's two reads are
    then consecutive requests of this product, with as little time between them as the
    service allows.
    """

    def __init__(
        self,
        fetch: Fetch,
        max_size: int,
        on_snapshot: Callable[[Snapshot], None],
    ) -> None:
        self._fetch = fetch
        self.max_size = max_size
        self._on_snapshot = on_snapshot

    async def read_head(self, segment: Segment, stop_before: str | None) -> None:
        """From the first offset on, until the end of the list or, with ``stop_before``,
        until a window whose last test ended before that moment (unscheduled tests never
        stop it: at the head they sort first)."""
        window = Window(0, self.max_size)
        while True:
            read = await self._read(segment, window)
            if read.ended:
                segment.reached_end = True
                return
            if stop_before is not None and read.last and ended_before(read.last, stop_before):
                segment.stopped_early = True
                return
            window = window_after(window.end, self.max_size)

    async def read_tail(self, segment: Segment, expected: int) -> None:
        """The end of the list, back to the last scheduled test before the unscheduled
        ones, for a list about ``expected`` long.

        Starts with a window over offset ``expected`` (one past where the list should end),
        goes forward while windows are full and back while they are empty, then back from
        the end until a window begins with a scheduled test.
        """
        window = window_before(max(expected, 0), self.max_size)
        # Forward while full, back while empty: each way ends on a list that holds still.
        # Turning round again and again means the end keeps moving.
        direction, turns = 0, 0
        while True:
            read = await self._read(segment, window)
            if not read.ended:  # longer than expected: on towards the end
                step, window = 1, window_after(window.end, self.max_size)
            elif read.last is None and window.start > 0:  # shorter: step back
                step, window = -1, window_before(window.start - 1, self.max_size)
            else:
                segment.reached_end = True
                break
            turns += direction not in (0, step)
            direction = step
            if turns > MAX_TAIL_TURNS:
                segment.unfinished = "the end of the list kept moving"
                return
        while True:
            first = min((s for s in segment.snapshots if s.items), key=lambda s: s.start)
            if first.start == 0 or sort_key(first.items[0]) is not None:
                return  # every unscheduled test lies after this scheduled one
            await self._read(segment, window_before(first.start, self.max_size))

    async def _read(self, segment: Segment, window: Window) -> _Read:
        """Read one window into the segment; salvage it when it answers 500."""
        try:
            items = await self._fetch(window.page, window.size)
        except ServiceError as exc:
            if exc.status_code != 500:
                raise
            return await self._salvage(segment, window, str(exc))
        snapshot = Snapshot(window, items)
        segment.snapshots.append(snapshot)
        self._on_snapshot(snapshot)
        return _Read(snapshot.ended, items[-1] if items else None)

    async def _salvage(self, segment: Segment, failed: Window, error: str) -> _Read:
        if failed.size == 1:
            # A one-item window that fails holds a record, just not a readable one.
            segment.unreadable[failed.start] = error
            return _Read(ended=False, last=None)
        read = _Read(ended=False, last=None)
        for piece in salvage_windows(failed):
            read = await self._read(segment, piece)
            if read.ended:
                break  # what lies after the end of the list is not part of it
        return read
