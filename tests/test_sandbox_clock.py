"""The sandbox's time: near the present by default, pinnable, deterministic when pinned;
and the README's notebook one-liners return data against it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.data import ANCHOR
from testio_toolkit.sandbox.sandbox import ANCHOR_VARIABLE, resolve_anchor

from .conftest import make_mirror


def newest_end(sb: Sandbox) -> float:
    ends = [t["end_at"] for t in sb.truth().tests.values() if t["end_at"]]
    return max(datetime.fromisoformat(e).timestamp() for e in ends)


def test_the_anchor_is_now_unless_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ANCHOR_VARIABLE)
    hour = int(time.time()) // 3600 * 3600
    assert resolve_anchor() in (hour, hour + 3600)  # an hour may turn meanwhile
    assert resolve_anchor("2025-06-02T12:34:56Z") == ANCHOR
    assert resolve_anchor(datetime(2025, 6, 2, 12, tzinfo=UTC)) == ANCHOR
    assert resolve_anchor(ANCHOR + 59) == ANCHOR
    monkeypatch.setenv(ANCHOR_VARIABLE, "2025-06-02T12:00:00Z")
    assert resolve_anchor() == ANCHOR
    monkeypatch.setenv(ANCHOR_VARIABLE, "next tuesday")
    with pytest.raises(ValueError, match=ANCHOR_VARIABLE):
        resolve_anchor()


def test_a_pinned_anchor_gives_the_same_data_moved_in_time() -> None:
    later = ANCHOR + 400 * 86400
    with Sandbox(anchor=ANCHOR) as first, Sandbox(anchor=later) as moved:
        again = Sandbox(anchor=ANCHOR)
        assert first.truth().tests == again.truth().tests  # deterministic when pinned
        a, b = first.truth(), moved.truth()
        assert sorted(a.tests) == sorted(b.tests) and sorted(a.bugs) == sorted(b.bugs)
        assert newest_end(moved) - newest_end(first) == 400 * 86400
        assert moved.now() >= later and first.now() < later


def test_the_readme_notebook_lines_return_data(db_path: Path) -> None:
    """README "In a notebook", against a sandbox whose clock is today's."""
    with Sandbox(anchor="now") as sb:
        assert abs(sb.now() - time.time()) < 2 * 3600
        tt = make_mirror(sb, db_path)
        assert tt.sync().ok
        assert len(tt.tests(status="running")) > 0
        assert len(tt.bugs(product="Flourish Pro", severity=["high", "critical"], since="30d")) > 0
        table = (
            tt.bugs(status="accepted", since="30d")
            .groupby(["product", "severity"], observed=True)
            .size()
            .unstack(fill_value=0)
        )
        assert table.to_numpy().sum() > 0 and len(table) > 0
