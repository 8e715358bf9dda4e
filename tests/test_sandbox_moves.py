"""The sandbox moves like the service, over real HTTP: its clock, unscheduled tests, new
tests placed where their end_at sorts them, products deleted and restored, and the list
moving while a client reads it (``Faults.list_moves_every``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from testio_toolkit.cli import cli
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.command import fault_switches
from testio_toolkit.sandbox.faults import MOVE_KINDS, Movement

HOUR = 3600
DAY = 86400
IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    """A small sandbox of its own: these tests change its data."""
    with Sandbox(preset="small", seed=0) as sandbox:
        yield sandbox


def client_for(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Token {sandbox.token}"}, timeout=10
    )


def instant(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def list_key(test: dict[str, Any]) -> tuple[float, int]:
    """The documented order as a descending sort key: end_at instant (nulls last), id."""
    end = test["end_at"]
    return (-math.inf if end is None else instant(end), test["id"])


def expected_order(tests: list[dict[str, Any]]) -> list[int]:
    """Ids in the documented list order, computed from the served objects alone."""
    return [t["id"] for t in sorted(tests, key=list_key, reverse=True)]


def page(c: httpx.Client, pid: int, number: int, per_page: int = 5) -> list[dict[str, Any]]:
    r = c.get(f"products/{pid}/exploratory_tests", params={"page": number, "per_page": per_page})
    r.raise_for_status()
    items: list[dict[str, Any]] = r.json()["exploratory_tests"]
    return items


def read_all(c: httpx.Client, pid: int) -> list[dict[str, Any]]:
    """A product's whole list in one page (no movement applies when faults are off)."""
    return page(c, pid, 1, per_page=100_000)


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [t["id"] for t in items]


def second_product(sb: Sandbox) -> int:
    """The 52-test product of ``small``: scheduled tests on several pages, one unscheduled."""
    return list(sb.truth().products)[1]


# -- the clock -------------------------------------------------------------------------


def test_date_header_follows_the_sandbox_clock_and_advance(fresh: Sandbox) -> None:
    with client_for(fresh) as c:
        before = fresh.now()
        r = c.get("products")
        after = fresh.now()
        missing = c.get("products/1")
        fresh.advance(10 * DAY)
        later = c.get("products")
        moved_to = fresh.now()
    assert IMF_FIXDATE.fullmatch(r.headers["Date"])
    served = parsedate_to_datetime(r.headers["Date"]).timestamp()
    assert math.floor(before) <= served <= after
    # The clock starts at the data's "now", 2025-06-02T12:00:00Z, not at the wall clock.
    assert datetime.fromisoformat("2025-06-02T12:00:00Z").timestamp() <= before
    assert served < datetime.fromisoformat("2025-06-03T00:00:00Z").timestamp()
    assert missing.status_code == 404 and "Date" in missing.headers
    served_later = parsedate_to_datetime(later.headers["Date"]).timestamp()
    assert math.floor(after + 10 * DAY) <= served_later <= moved_to
    with pytest.raises(ValueError):
        fresh.advance(-1)


# -- unscheduled tests -----------------------------------------------------------------


def test_generated_unscheduled_tests_have_no_times_and_are_listed_last_by_id_descending(
    fresh: Sandbox,
) -> None:
    unscheduled = 0
    with client_for(fresh) as c:
        for pid in fresh.truth().products:
            items = [t for n in range(1, 30) for t in page(c, pid, n, per_page=10)]
            tail = [t for t in items if t["end_at"] is None]
            unscheduled += len(tail)
            assert all(t["start_at"] is None and t["created_at"] for t in tail)
            assert items[len(items) - len(tail) :] == tail  # last
            assert ids(tail) == sorted(ids(tail), reverse=True)
            assert ids(items) == expected_order(items)
    assert unscheduled >= 2


def test_medium_has_unscheduled_tests_too() -> None:
    tests = Sandbox(preset="medium").truth().tests.values()
    unscheduled = [t for t in tests if t["end_at"] is None]
    assert len(unscheduled) >= 10
    assert all(t["start_at"] is None for t in unscheduled)
    assert {t["status"] for t in unscheduled} <= {"initialized", "waiting"}


# -- new tests -------------------------------------------------------------------------


def test_added_tests_land_where_their_end_at_sorts_them(fresh: Sandbox) -> None:
    pid = second_product(fresh)
    old = set(fresh.truth().tests)
    with client_for(fresh) as c:
        # A long test already scheduled, ending after any "sorted" test can.
        longest = ids(read_all(c, pid))[5]
        fresh.update_test(longest, end_at="2025-09-01T00:00:00Z")
        now = fresh.now()
        head = fresh.add_tests(pid, count=2, where="head")
        placed = fresh.add_tests(pid, count=6, where="sorted")
        tail = fresh.add_tests(pid, count=2, where="unscheduled")
        created_by = fresh.now()
        items = read_all(c, pid)
        query = ",".join(map(str, head + placed + tail))
        bugs = c.get("bugs", params={"filter_test_cycle_ids": query}).json()["bugs"]
    new = head + placed + tail
    assert new == sorted(new) and min(new) > max(old)  # ids grow with creation
    assert ids(items) == expected_order(items)
    by_id = {t["id"]: t for t in items}
    assert ids(items)[:2] == head[::-1]
    order = ids(items)
    assert all(order.index(t) > order.index(longest) for t in placed)
    unscheduled = [t for t in order if by_id[t]["end_at"] is None]
    assert order[len(order) - len(unscheduled) :] == unscheduled  # the tail
    assert unscheduled[:2] == tail[::-1]  # newest (highest id) first among them
    for t in new:
        assert math.floor(now) <= instant(by_id[t]["created_at"]) <= created_by
    for t in placed:
        test = by_id[t]
        duration = instant(test["end_at"]) - instant(test["created_at"])
        assert 2 * HOUR <= duration <= 30 * DAY
        assert instant(test["start_at"]) == instant(test["created_at"])  # starts when made
    for t in tail:
        assert (by_id[t]["start_at"], by_id[t]["end_at"], by_id[t]["status"]) == (
            None,
            None,
            "initialized",
        )
    assert not {b["test"]["id"] for b in bugs} & set(tail)
    per_test = [sum(b["test"]["id"] == t for b in bugs) for t in head + placed]
    assert all(0 <= n <= 5 for n in per_test)


# -- products deleted and restored -----------------------------------------------------


def test_a_deleted_product_answers_404_and_comes_back_exactly_as_it_was(fresh: Sandbox) -> None:
    before = fresh.truth()
    pid = next(iter(before.products))  # sectioned, with tests, bugs and features
    section = before.products[pid]["sections_with_default"][1]["id"]
    its_tests = [t for t, p in before.product_of_test.items() if p == pid]
    with_bugs = sorted({b["test"]["id"] for b in before.bugs.values()} & set(its_tests))[:15]
    with client_for(fresh) as c:
        listed = c.get("products").json()
        fresh.delete_product(pid)
        assert pid not in {p["id"] for p in c.get("products").json()["products"]}
        for path in (
            f"products/{pid}",
            f"products/{pid}/exploratory_tests",
            f"products/{pid}/features",
            f"products/{pid}/sections/{section}/features",
            f"exploratory_tests/{its_tests[0]}",
        ):
            assert c.get(path).status_code == 404, path
        query = ",".join(map(str, with_bugs))
        assert c.get("bugs", params={"filter_test_cycle_ids": query}).json() == {"bugs": []}
        hidden = fresh.truth()
        assert pid not in hidden.products and pid not in hidden.product_of_test.values()
        assert pid not in hidden.product_of_feature.values()
        assert not set(its_tests) & set(hidden.tests)
        assert not {b for b, v in before.bugs.items() if v["test"]["id"] in its_tests} & set(
            hidden.bugs
        )
        with pytest.raises(LookupError):
            fresh.delete_product(pid)
        fresh.restore_product(pid)
        assert c.get("products").json() == listed
        assert c.get(f"exploratory_tests/{its_tests[0]}").status_code == 200
    assert fresh.truth() == before
    with pytest.raises(LookupError):
        fresh.restore_product(pid)


# -- the list moves while it is read ---------------------------------------------------


def read_with_one_move(sb: Sandbox, kind: str) -> tuple[list[int], list[int], list[int], list[int]]:
    """List before, page 1, page 2 (moved before answering), list after; per_page 5."""
    pid = second_product(sb)
    with client_for(sb) as c:
        before = ids(read_all(c, pid))
        first = ids(page(c, pid, 1))
        sb.set_faults(list_moves=kind, list_moves_every=1)
        second = ids(page(c, pid, 2))
        sb.clear_faults()
        items = read_all(c, pid)
    assert ids(items) == expected_order(items)  # still by end_at desc, id desc, nulls last
    assert first == before[:5]
    assert second == ids(items)[5:10]
    return before, first, second, ids(items)


def test_delete_above_makes_the_reader_skip_an_item(fresh: Sandbox) -> None:
    before, first, second, after = read_with_one_move(fresh, "delete_above")
    [moved] = fresh.movements
    assert moved.kind == "delete_above" and moved.test_id in first
    assert after == [t for t in before if t != moved.test_id]
    assert before[5] in after and before[5] not in first + second  # slid onto page 1
    with client_for(fresh) as c:
        assert c.get(f"exploratory_tests/{moved.test_id}").status_code == 404


def test_move_up_brings_a_test_from_below_above_the_window(fresh: Sandbox) -> None:
    truth = fresh.truth()
    before, first, second, after = read_with_one_move(fresh, "move_up")
    [moved] = fresh.movements
    assert moved.kind == "move_up"
    assert before.index(moved.test_id) >= 5 and after.index(moved.test_id) < 5
    assert sorted(after) == sorted(before)
    assert fresh.truth().tests[moved.test_id]["end_at"] != truth.tests[moved.test_id]["end_at"]
    assert before[4] in first and before[4] in second  # pushed onto page 2: seen twice
    assert truth.tests[moved.test_id]["status"] not in {"archived", "cancelled"}


def test_move_down_sends_a_test_that_ended_early_below_the_window(fresh: Sandbox) -> None:
    truth = fresh.truth()
    before, first, second, after = read_with_one_move(fresh, "move_down")
    [moved] = fresh.movements
    assert moved.kind == "move_down"
    assert before.index(moved.test_id) < after.index(moved.test_id)
    assert sorted(after) == sorted(before)
    old_end = instant(truth.tests[moved.test_id]["end_at"])
    new = fresh.truth().tests[moved.test_id]
    assert instant(new["end_at"]) < old_end
    assert instant(new["start_at"]) <= instant(new["end_at"])
    # Ended early, but not before it was created: where no test above the window can cross
    # it that way, another one moves down instead.
    assert instant(new["end_at"]) >= instant(new["created_at"])
    if before.index(moved.test_id) < 5 <= after.index(moved.test_id):
        assert before[5] not in first + second  # slid onto page 1: skipped


@pytest.mark.parametrize("kind", ["insert", "insert_head", "insert_unscheduled"])
def test_inserts_add_exactly_one_new_test_where_its_end_at_sorts_it(
    fresh: Sandbox, kind: str
) -> None:
    now = fresh.now()
    before, first, second, after = read_with_one_move(fresh, kind)
    [moved] = fresh.movements
    assert moved.kind == kind
    assert set(after) - set(before) == {moved.test_id} and len(after) == len(before) + 1
    assert moved.test_id > max(before)
    new = fresh.truth().tests[moved.test_id]
    assert now - 1 <= instant(new["created_at"]) <= fresh.now()
    if kind == "insert_head":
        assert after[0] == moved.test_id
        assert before[4] in first and before[4] in second  # seen twice
    elif kind == "insert_unscheduled":
        assert new["end_at"] is None and new["status"] == "initialized"
        first_unscheduled = next(t for t in after if fresh.truth().tests[t]["end_at"] is None)
        assert first_unscheduled == moved.test_id
        assert second == before[5:10]
    else:
        duration = instant(new["end_at"]) - instant(new["created_at"])
        assert 2 * HOUR <= duration <= 30 * DAY


def test_movements_come_every_nth_list_request_and_are_recorded(fresh: Sandbox) -> None:
    pid = second_product(fresh)
    with client_for(fresh) as c:
        fresh.set_faults(list_moves_every=3)
        for n in range(1, 10):
            page(c, pid, n % 4 + 1)
            c.get("products")  # other endpoints do not count
    moves = fresh.movements
    assert [m.request_number for m in moves] == [3, 6, 9]
    assert all(m.product_id == pid and m.kind in MOVE_KINDS for m in moves)
    assert all(isinstance(m, Movement) for m in moves)
    fresh.movements.clear()  # a copy
    fresh.reset_counters()
    assert fresh.movements == moves
    fresh.clear_movements()
    assert fresh.movements == []


def test_a_fault_seed_gives_the_same_movements_and_pages_every_time() -> None:
    def run(seed: int) -> tuple[list[tuple[str, int, int]], list[list[int]]]:
        with Sandbox(preset="small", seed=0) as sb, client_for(sb) as c:
            pid = second_product(sb)
            sb.set_faults(list_moves_every=1, fault_seed=seed)
            pages = [ids(page(c, pid, n % 5 + 1)) for n in range(18)]
            return [(m.kind, m.test_id, m.request_number) for m in sb.movements], pages

    first = run(11)
    assert len(first[0]) == 18
    assert {kind for kind, _, _ in first[0]} == set(MOVE_KINDS)
    assert run(11) == first
    assert run(12)[0] != first[0]


def test_list_move_switches_are_validated(fresh: Sandbox) -> None:
    for bad in ({"list_moves": "teleport"}, {"list_moves": ""}, {"list_moves_every": 0}):
        with pytest.raises(ValueError):
            fresh.set_faults(**bad)
    fresh.set_faults(list_moves=" insert , move_up ", list_moves_every=None)


# -- the command line ------------------------------------------------------------------


def test_fault_options_parse_ints_none_and_comma_separated_words() -> None:
    assert fault_switches(["list_moves_every=3", "list_moves=insert,move_up"]) == {
        "list_moves_every": 3,
        "list_moves": "insert,move_up",
    }
    assert fault_switches(["list_moves_every=null"], poison=[7]) == {
        "list_moves_every": None,
        "poisoned_test_ids": {7},
    }


def test_cli_sandbox_accepts_list_move_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Sandbox] = []
    monkeypatch.setattr(Sandbox, "serve_forever", lambda self: served.append(self))
    runner = CliRunner()
    args = ["sandbox", "--fault", "list_moves_every=3", "--fault", "list_moves=insert,move_up"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    [sb] = served
    assert (sb.faults.list_moves_every, sb.faults.list_moves) == (3, "insert,move_up")
    bad = runner.invoke(cli, ["sandbox", "--fault", "list_moves=teleport"])
    assert bad.exit_code == 2 and "list_moves" in bad.output
