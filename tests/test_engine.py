"""The engine against one precise service, over httpx.MockTransport: a detail form with fields
the list lacks, and a bug batch that fails while its siblings are still in flight.

Everything else about the engine is tested against the sandbox over real HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from testio_toolkit.client import ClientOptions, TestIOClient
from testio_toolkit.store import Store
from testio_toolkit.sync import Plan, list_form, run_plan

BASE = "https://api.example.test/customer/v2"
PREFIX = "/customer/v2/"
# The service's clock: every test below ended before it, so a sync's head read stops early.
DATE = "Mon, 02 Jun 2025 12:00:00 GMT"
PRODUCT = {"id": 1, "name": "Shop", "sections": [], "sections_with_default": [{"id": 2}]}


def make_tests(count: int) -> list[dict[str, Any]]:
    """Running tests, newest first, as the list serves them."""
    return [
        {
            "id": 5000 - k,
            "title": f"Test {k}",
            "status": "running",
            "end_at": f"2025-05-{28 - k // 3:02d}T10:00:00Z",
            "goal_text": "🐞 見つける",
        }
        for k in range(count)
    ]


class Service:
    """Answers like the TestIO API for one product; ``bugs_handler`` may replace bugs."""

    def __init__(self, tests: list[dict[str, Any]]) -> None:
        self.tests = tests
        self.requests: list[str] = []

    async def bugs(self, ids: list[int]) -> httpx.Response:
        return self.ok("bugs", [])

    @staticmethod
    def ok(envelope: str, payload: Any) -> httpx.Response:
        return httpx.Response(200, json={envelope: payload}, headers={"Date": DATE})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path[len(PREFIX) :]
        self.requests.append(path)
        if path == "products":
            return self.ok("products", [PRODUCT])
        if path == "products/1/exploratory_tests":
            page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
            window = self.tests[(page - 1) * per_page : page * per_page]
            return self.ok("exploratory_tests", window)
        if path.startswith("exploratory_tests/"):
            test_id = int(path.rsplit("/", 1)[1])
            test = next(t for t in self.tests if t["id"] == test_id)
            # The detail endpoint serves more than the list does.
            detail = test | {"product": {"id": 1, "name": "Shop"}, "detail_only": {"x": 1}}
            return self.ok("exploratory_test", detail)
        if path == "bugs":
            ids = [int(i) for i in request.url.params["filter_test_cycle_ids"].split(",")]
            return await self.bugs(ids)
        if path == "products/1/features":
            return self.ok("features", [])
        return httpx.Response(404, json={"error": "Not found"})


async def run(service: Service, path: Path, mode: str) -> Any:
    options = ClientOptions(backoff_base=0.001, backoff_max=0.002, concurrency=4)
    transport = httpx.MockTransport(service)
    async with TestIOClient(BASE, "token-123", options, transport=transport) as client:
        with Store.open(path) as store:
            accounts = await client.products()
            plan = Plan(mode=mode)  # type: ignore[arg-type]
            return await run_plan(client, store, plan, accounts, accounts, source=BASE)


def writes(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT total FROM write_count").fetchone()[0])
    finally:
        conn.close()


def count_writes(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE write_count (total INTEGER)")
    conn.execute("INSERT INTO write_count VALUES (0)")
    for event in ("INSERT", "UPDATE"):
        conn.execute(
            f"CREATE TRIGGER count_{event.lower()} AFTER {event} ON tests "
            "BEGIN UPDATE write_count SET total = total + 1; END"
        )
    conn.commit()
    conn.close()


def test_a_test_is_stored_in_one_form_whichever_endpoint_served_it(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    service = Service(make_tests(60))
    assert asyncio.run(run(service, path, "refresh")).status == "success"
    count_writes(path)

    for mode in ("sync", "refresh", "sync"):
        service.requests.clear()
        result = asyncio.run(run(service, path, mode))
        assert result.status == "success"
        if mode == "sync":  # the tests the list windows did not show came from details
            assert sum(p.startswith("exploratory_tests/") for p in service.requests) > 0
        assert writes(path) == 0, f"{mode} rewrote unchanged tests"


def test_list_form_keeps_the_stored_fields_and_drops_the_details_own() -> None:
    stored = '{"id": 7, "status": "running", "title": "Old"}'
    detail = {"id": 7, "status": "locked", "title": "New", "product": {"id": 1}, "extra": 1}
    assert list_form(detail, stored) == {"id": 7, "status": "locked", "title": "New"}
    assert list_form(detail, None) == {"id": 7, "status": "locked", "title": "New", "extra": 1}


def test_a_failed_bug_batch_cancels_its_siblings_before_the_run_returns(tmp_path: Path) -> None:
    service = Service(make_tests(60))
    in_flight = finished_late = 0
    returned = False

    async def bugs(ids: list[int]) -> httpx.Response:
        nonlocal in_flight, finished_late
        if 5000 in ids:
            return httpx.Response(403, json={"error": "Forbidden"}, headers={"Date": DATE})
        in_flight += 1
        try:
            await asyncio.sleep(0.3)
        finally:
            in_flight -= 1
        finished_late += returned
        return service.ok("bugs", [])

    service.bugs = bugs  # type: ignore[method-assign]

    async def scenario() -> tuple[Any, int]:
        nonlocal returned
        options = ClientOptions(backoff_base=0.001, concurrency=8)
        transport = httpx.MockTransport(service)
        async with TestIOClient(BASE, "token-123", options, transport=transport) as client:
            with Store.open(tmp_path / "m.db") as store:
                accounts = await client.products()
                result = await run_plan(
                    client, store, Plan(mode="refresh"), accounts, accounts, source=BASE
                )
                returned = True
                still_running = in_flight
                await asyncio.sleep(0.5)  # the client is still open: detached work would go on
                return result, still_running

    result, still_running = asyncio.run(scenario())
    (report,) = result.products
    assert report.status == "failed" and "403" in (report.error or "")
    assert still_running == 0
    assert finished_late == 0


@pytest.mark.parametrize("count", [0, 1, 24, 25, 26, 60])
def test_any_list_length_is_read_whole_by_a_refresh(tmp_path: Path, count: int) -> None:
    service = Service(make_tests(count))
    result = asyncio.run(run(service, tmp_path / "m.db", "refresh"))
    assert result.status == "success"
    assert result.tests.added == count


class HidingService(Service):
    """A list that never shows one test, while its detail endpoint serves it."""

    def __init__(self, tests: list[dict[str, Any]], hidden: int) -> None:
        super().__init__(tests)
        self.hidden = hidden

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/exploratory_tests"):
            page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
            shown = [t for t in self.tests if t["id"] != self.hidden]
            window = shown[(page - 1) * per_page : page * per_page]
            self.requests.append("products/1/exploratory_tests")
            return self.ok("exploratory_tests", window)
        return await super().__call__(request)


def test_a_rebuild_that_lacks_a_test_the_old_mirror_held_is_checked_and_not_called_complete(
    tmp_path: Path,
) -> None:
    tests = make_tests(40)
    hidden = tests[17]["id"]
    old = tmp_path / "old.db"
    assert asyncio.run(run(Service(tests), old, "refresh")).status == "success"

    async def rebuild() -> Any:
        service = HidingService(tests, hidden)
        transport = httpx.MockTransport(service)
        async with TestIOClient(BASE, "token-123", transport=transport) as client:
            with Store.open(tmp_path / "new.db") as fresh, Store.open_read_only(old) as previous:
                accounts = await client.products()
                plan = Plan(mode="nuke")
                result = await run_plan(
                    client, fresh, plan, accounts, accounts, source=BASE, previous=previous
                )
        return result, service.requests

    result, requests = asyncio.run(rebuild())
    (report,) = result.products
    # Checked on its detail endpoint before anything is swapped in, and written there ...
    assert f"exploratory_tests/{hidden}" in requests
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("SELECT count(*) FROM tests WHERE id = ?", (hidden,)).fetchone() == (1,)
    conn.close()
    # ... but a list that hides a live test proves nothing: not success, and it says which.
    assert report.status == "partial"
    assert f"test {hidden} was missing from the list but exists" in (report.error or "")
