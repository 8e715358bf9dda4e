"""listing.py: the window plan and the evidence rules as plain functions, then the reader over
an in-memory list that moves between two reads exactly as the service's does.

The oracle for the reader is the list itself: what existed at every read, what was read.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from testio_toolkit.errors import ServiceError
from testio_toolkit.listing import (
    Listing,
    ListingReader,
    Segment,
    Snapshot,
    Window,
    salvage_windows,
    window_after,
    window_before,
)

# -- the window plan ------------------------------------------------------------------------


@pytest.mark.parametrize("max_size", [1, 2, 5, 7, 25])
def test_each_window_is_a_page_that_overlaps_the_one_before_and_moves_on(max_size: int) -> None:
    end = max_size
    for _ in range(400):
        window = window_after(end, max_size)
        assert window.start % window.size == 0  # a real page: page = start // size + 1
        assert (window.page - 1) * window.size == window.start
        assert window.start <= end - 1 < window.end  # shares the previous window's last offset
        assert window.end > end  # and reads further
        end = window.end


@pytest.mark.parametrize("max_size", [1, 5, 25])
def test_a_window_before_an_offset_covers_it_and_reaches_back(max_size: int) -> None:
    for offset in range(1, 500):
        window = window_before(offset, max_size)
        assert window.start % window.size == 0
        assert window.start < offset < window.end


def test_overlapping_pages_of_25_cost_about_a_quarter_more_than_plain_pages() -> None:
    end, windows = 25, 1
    while end < 10_000:
        end = window_after(end, 25).end
        windows += 1
    assert 10_000 / 25 < windows < 1.4 * 10_000 / 25


def test_salvage_windows_cover_the_failed_window_and_end_offset_by_offset() -> None:
    for failed in (Window(0, 25), Window(46, 23), Window(100, 20), Window(25, 5)):
        pieces = salvage_windows(failed)
        covered = {o for w in pieces for o in range(w.start, w.end)}
        assert set(range(failed.start, failed.end)) <= covered
        assert all(w.size <= max(1, failed.size // 5) or w.size < failed.size for w in pieces)
    assert salvage_windows(Window(25, 5)) == [Window(o, 1) for o in range(25, 30)]


# -- the evidence rules ---------------------------------------------------------------------


def snap(start: int, size: int, ids: list[int]) -> Snapshot:
    return Snapshot(Window(start, size), [{"id": i, "end_at": None} for i in ids])


def test_windows_that_agree_on_their_shared_offset_join() -> None:
    segment = Segment([snap(0, 5, [9, 8, 7, 6, 5]), snap(4, 4, [5, 4, 3])])
    assert segment.evidence() == []


def test_a_boundary_read_twice_with_another_test_is_evidence() -> None:
    # Page 1 was read, then a test above it was deleted: its last test slid to offset 3.
    segment = Segment([snap(0, 5, [9, 8, 7, 6, 5]), snap(4, 4, [4, 3, 2])])
    assert segment.evidence() == ["offset 4 held test 5, then test 4"]


def test_windows_that_do_not_overlap_prove_nothing_unless_an_unreadable_offset_is_there() -> None:
    apart = Segment([snap(0, 5, [9, 8, 7, 6, 5]), snap(5, 5, [4, 3, 2])])
    assert apart.evidence() == ["the windows at offsets 0 and 5 do not overlap"]
    broken = Segment([snap(0, 4, [9, 8, 7, 6]), snap(5, 5, [4, 3])], unreadable={4: "HTTP 500"})
    assert broken.evidence() == []


def test_a_test_listed_at_two_offsets_is_evidence() -> None:
    listing = Listing([Segment([snap(0, 5, [9, 8, 7, 6, 5]), snap(4, 4, [5, 7, 3])])])
    assert "test 7 was listed at offsets 2 and 5" in listing.evidence()


def test_a_read_that_stops_early_must_see_the_documented_order() -> None:
    items = [
        {"id": 1, "end_at": "2025-01-01T00:00:00Z"},
        {"id": 2, "end_at": "2025-02-01T00:00:00Z"},
    ]
    segment = Segment([Snapshot(Window(0, 5), items)], stopped_early=True)
    assert segment.evidence() == ["tests at offset 0+ are not in end_at order"]


# -- the reader over a list that moves --------------------------------------------------------


def stamp(day: int) -> str:
    return f"2025-{1 + day // 28:02d}-{1 + day % 28:02d}T00:00:00Z"


class MovingList:
    """A product's list as the service keeps it: sorted by end_at, newest first, ties by id
    descending, unscheduled tests last; ``moves`` run before answering chosen requests."""

    def __init__(self, size: int, unscheduled: int = 0) -> None:
        self.tests: dict[int, str | None] = {1000 + i: stamp(i // 2) for i in range(size)}
        for k in range(unscheduled):
            self.tests[5000 + k] = None
        self.next_id = 9000
        self.requests = 0
        self.moves: dict[int, str] = {}  # request number -> kind
        self.history: list[set[int]] = []

    def order(self) -> list[int]:
        dated = sorted((t for t, e in self.tests.items() if e), key=lambda t: (self.tests[t], t))
        undated = sorted((t for t, e in self.tests.items() if not e), reverse=True)
        return list(reversed(dated)) + undated

    def move(self, kind: str, start: int, rng: random.Random) -> None:
        order = self.order()
        above = order[:start]
        if kind == "insert_head":
            self.tests[self.next_id] = "2099-01-01T00:00:00Z"
            self.next_id += 1
        elif kind == "delete_above" and above:
            del self.tests[rng.choice(above)]
        elif kind == "move_up" and start < len(order) and start > 0:
            self.tests[rng.choice(order[start:])] = "2098-01-01T00:00:00Z"

    async def fetch(self, page: int, per_page: int, rng: random.Random) -> list[dict[str, Any]]:
        self.requests += 1
        start = (page - 1) * per_page
        if self.requests in self.moves:
            self.move(self.moves[self.requests], start, rng)
        self.history.append(set(self.tests))
        window = self.order()[start : start + per_page]
        return [{"id": t, "end_at": self.tests[t]} for t in window]


async def read_all(service: MovingList, max_size: int = 5) -> Listing:
    rng = random.Random(7)
    listing = Listing()

    async def fetch(page: int, per_page: int) -> list[dict[str, Any]]:
        return await service.fetch(page, per_page, rng)

    reader = ListingReader(fetch, max_size, lambda snapshot: None)
    await reader.read_head(listing.segment(), None)
    return listing


def test_a_still_list_is_read_whole_and_proves_itself() -> None:
    service = MovingList(size=63, unscheduled=3)
    listing = asyncio.run(read_all(service))
    assert listing.evidence() == []
    assert listing.seen() == set(service.tests)


@pytest.mark.parametrize("kind", ["insert_head", "delete_above", "move_up"])
@pytest.mark.parametrize("at_request", [2, 3, 5, 8])
def test_one_movement_between_two_reads_is_always_seen_or_harmless(
    kind: str, at_request: int
) -> None:
    service = MovingList(size=40)
    service.moves = {at_request: kind}
    listing = asyncio.run(read_all(service))
    existed_throughout = set.intersection(*service.history)
    if not listing.evidence():
        assert existed_throughout <= listing.seen()
    if kind in ("delete_above", "move_up"):  # these hide a test: the read must notice
        assert listing.evidence() != []


def test_a_window_that_answers_500_is_salvaged_and_the_broken_offset_reported() -> None:
    service = MovingList(size=30)
    broken = service.order()[12]

    async def fetch(page: int, per_page: int) -> list[dict[str, Any]]:
        items = await service.fetch(page, per_page, random.Random(0))
        if any(item["id"] == broken for item in items):
            raise ServiceError("HTTP 500", status_code=500)
        return items

    async def read() -> Listing:
        listing = Listing()
        await ListingReader(fetch, 25, lambda s: None).read_head(listing.segment(), None)
        return listing

    listing = asyncio.run(read())
    assert listing.unreadable.keys() == {12}
    assert listing.seen() == set(service.tests) - {broken}


def test_the_tail_read_finds_the_end_and_every_unscheduled_test() -> None:
    service = MovingList(size=80, unscheduled=7)

    async def read(expected: int) -> Listing:
        listing = Listing()

        async def fetch(page: int, per_page: int) -> list[dict[str, Any]]:
            return await service.fetch(page, per_page, random.Random(0))

        await ListingReader(fetch, 25, lambda s: None).read_tail(listing.segment(), expected)
        return listing

    for expected in (60, 87, 120):  # shorter, exact, longer than the list
        listing = asyncio.run(read(expected))
        assert listing.evidence() == []
        assert {t for t, e in service.tests.items() if e is None} <= listing.seen()
        assert listing.segments[0].reached_end


def test_a_window_inside_a_larger_one_joins_the_one_that_reaches_furthest() -> None:
    # window_after(180, 5) is Window(175, 7): it contains Window(175, 5) read before it.
    ids = list(range(400, 350, -1))
    segment = Segment(
        [
            Snapshot(Window(175, 5), [{"id": i} for i in ids[0:5]]),
            Snapshot(Window(175, 7), [{"id": i} for i in ids[0:7]]),
            Snapshot(Window(181, 1), [{"id": ids[6]}]),
            Snapshot(Window(180, 5), [{"id": i} for i in ids[5:10]]),
        ]
    )
    assert segment.evidence() == []
    assert window_after(180, 5) == Window(175, 7)


@pytest.mark.parametrize("size", range(1, 400, 7))
def test_a_still_list_of_any_length_proves_itself_with_small_pages(size: int) -> None:
    service = MovingList(size=size, unscheduled=2)
    listing = asyncio.run(read_all(service, max_size=5))
    assert listing.evidence() == []
    assert listing.seen() == set(service.tests)


def test_the_tail_read_of_a_list_much_longer_than_expected_reaches_its_end() -> None:
    # Hundreds of new unscheduled tests since the mirror last read the list (found by the
    # model test): the end lies far past where the mirror expects it.
    service = MovingList(size=80, unscheduled=300)

    async def read() -> Listing:
        listing = Listing()

        async def fetch(page: int, per_page: int) -> list[dict[str, Any]]:
            return await service.fetch(page, per_page, random.Random(0))

        await ListingReader(fetch, 5, lambda s: None).read_tail(listing.segment(), 82)
        return listing

    listing = asyncio.run(read())
    assert listing.evidence() == []
    assert {t for t, e in service.tests.items() if e is None} <= listing.seen()
