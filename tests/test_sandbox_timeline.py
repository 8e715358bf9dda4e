"""A sandbox whose data keeps its dates: anchored once, then time passes (timeline.py).

The oracle is the sandbox's own account of what it changed (``sb.timeline()``), never the
change feed under test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit import api
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.data import ANCHOR, HOUR
from testio_toolkit.sandbox.timeline import Event

from .conftest import assert_mirror_equals_truth, make_mirror


def net_changes(events: list[Event]) -> tuple[set[tuple[str, int]], set[tuple[str, int, str, str]]]:
    """What a mirror read before and after these events must record: the records added,
    and each status whose value differs at the end (several moves of one record are one)."""
    added = {(e.entity, e.id) for e in events if e.kind == "added"}
    first: dict[tuple[str, int], str] = {}
    last: dict[tuple[str, int], str] = {}
    for e in events:
        if e.kind == "changed" and (e.entity, e.id) not in added:
            first.setdefault((e.entity, e.id), e.old)
            last[(e.entity, e.id)] = e.new
    changed = {(k[0], k[1], first[k], last[k]) for k in last if first[k] != last[k]}
    return added, changed


def recorded(
    mirror: tt.Mirror, run_id: int
) -> tuple[set[tuple[str, int]], set[tuple[str, int, str, str]]]:
    rows = mirror.changes(since="all", run=run_id)
    added = {(r.entity, int(r.entity_id)) for r in rows.itertuples() if r.kind == "added"}
    changed = {
        (r.entity, int(r.entity_id), r.old, r.new) for r in rows.itertuples() if r.kind == "changed"
    }
    return added, changed


def last_run_id(mirror: tt.Mirror) -> int:
    return int(mirror.runs()["id"].max())


def test_the_change_feed_records_only_what_the_sandbox_changed_as_hours_pass(
    db_path: Path,
) -> None:
    with Sandbox(preset="small", anchor=ANCHOR, evolve=True) as sb:
        mirror = make_mirror(sb, db_path)
        mirror.sync()
        assert sb.timeline() == []  # no hour has passed: nothing changed by itself
        for hours in (3, 5):  # a clock change of several hours, twice
            seen = len(sb.timeline())
            sb.advance(hours * HOUR)
            events = sb.timeline()[seen:]
            assert events, f"{hours} hours on a busy account bring news"
            result = mirror.refresh()
            assert result.status == "success"
            assert_mirror_equals_truth(db_path, sb)
            added, changed = recorded(mirror, last_run_id(mirror))
            assert (added, {c for c in changed if c[0] == "test" or c[0] == "bug"}) == (
                net_changes(events)
            )
            fields = set(mirror.changes(since="all", run=last_run_id(mirror))["field"].dropna())
            assert fields <= {"status"}, f"only statuses move by themselves, not {fields}"


def test_an_evolving_sandbox_plays_the_same_hours_the_same_way() -> None:
    one = Sandbox(preset="small", anchor=ANCHOR, evolve=True)
    two = Sandbox(preset="small", anchor=ANCHOR, evolve=True)
    one.advance(10 * HOUR)
    for _ in range(10):  # the same hours, one at a time
        two.advance(HOUR)
    assert one.timeline() == two.timeline()
    assert one.truth() == two.truth()
    kinds = {(e.entity, e.kind, e.new) for e in one.timeline()}
    assert ("test", "added", None) in kinds and ("bug", "added", None) in kinds
    three = Sandbox(preset="small", anchor=ANCHOR)
    three.advance(10 * HOUR)
    assert three.timeline() == [] and three.truth() == Sandbox(preset="small").truth()


def test_bugs_open_ten_days_are_accepted_automatically() -> None:
    sb = Sandbox(preset="small", anchor=ANCHOR, evolve=True)
    sb.advance(15 * 24 * HOUR)
    reported = {e.id: e.at for e in sb.timeline() if e.entity == "bug" and e.kind == "added"}
    truth = sb.truth()
    for event in sb.timeline():
        if event.entity == "bug" and event.kind == "changed" and event.id in reported:
            waited = event.at - reported[event.id]
            assert 2 * HOUR <= waited <= 10 * 24 * HOUR
            auto = truth.bugs[event.id].get("auto_accepted")
            assert auto == (waited == 10 * 24 * HOUR), event
    overdue = [b for b, at in reported.items() if sb.now() - at > 10 * 24 * HOUR]
    assert overdue and all(truth.bugs[b]["status"] in ("accepted", "rejected") for b in overdue)


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bundled sandbox as a user meets it: no pinned clock, a fresh process."""
    monkeypatch.delenv("TESTIO_SANDBOX_NOW", raising=False)
    monkeypatch.setattr(api, "_sandboxes", {})
    yield
    for sandbox in api._sandboxes.values():
        sandbox.stop()


def test_a_sandbox_mirror_keeps_its_dates_in_a_later_process(unpinned: None, db_path: Path) -> None:
    anchor = int(time.time()) // HOUR * HOUR - 5 * HOUR  # first synced five hours ago
    first = Sandbox(preset="small", anchor=anchor, evolve=True).start()
    api._sandboxes["small"] = first
    mirror = tt.Mirror(db_path, sandbox=True, progress=False)
    mirror.sync()
    first.stop()
    api._sandboxes.clear()  # a new process: the mirror remembers its anchor

    later = tt.Mirror(db_path, sandbox=True, progress=False)
    result = later.refresh()
    sandbox = api._sandboxes["small"]
    assert sandbox.anchor == anchor, "the stored anchor, not the current hour"
    assert result.status == "success"
    events = sandbox.timeline()
    assert events, "five hours passed"
    added, changed = recorded(later, last_run_id(later))
    assert (added, changed) == net_changes(events)  # no test re-dated by an hour
    assert_mirror_equals_truth(db_path, sandbox)
