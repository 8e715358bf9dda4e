"""Paging quirks of the service: a list read without ``page`` (the newest 150 tests only) and
a host that ignores paging (every page is page 1). The sandbox has both; the toolkit always
sends ``page`` and stops with a clear error on a host that ignores it, storing nothing twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

import testio_toolkit as tt
from testio_toolkit.client import TestIOClient, repeats_first_page
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.server import UNPAGED_TESTS

from .conftest import FAST, cli, cli_env, make_mirror


def get_tests(sb: Sandbox, product_id: int, **params: Any) -> list[int]:
    with httpx.Client(base_url=sb.url, headers={"Authorization": f"Token {sb.token}"}) as c:
        r = c.get(f"products/{product_id}/exploratory_tests", params=params)
        r.raise_for_status()
        return [t["id"] for t in r.json()["exploratory_tests"]]


def largest(sb: Sandbox) -> int:
    return max(sb.truth().products, key=lambda p: len(sb.test_ids(p)))


def test_the_sandbox_answers_only_the_newest_150_tests_without_page(sandbox: Sandbox) -> None:
    product = largest(sandbox)
    sandbox.add_tests(product, 200 - len(sandbox.test_ids(product)), where="sorted")
    order = sandbox.test_ids(product)
    assert len(order) == 200
    assert get_tests(sandbox, product) == order[:UNPAGED_TESTS]
    assert get_tests(sandbox, product, per_page=25) == order[:UNPAGED_TESTS]
    assert get_tests(sandbox, product, page=2, per_page=25) == order[25:50]


def test_a_host_that_ignores_paging_answers_page_1_for_every_page(sandbox: Sandbox) -> None:
    product = largest(sandbox)
    order = sandbox.test_ids(product)
    sandbox.set_faults(ignore_paging=True)
    assert get_tests(sandbox, product, page=2, per_page=25) == order[:25]
    assert get_tests(sandbox, product, page=3, per_page=10) == order[:10]


def test_a_later_page_that_repeats_page_1_is_recognised_and_a_shifted_one_is_not() -> None:
    first = [90, 89, 88, 87]
    assert repeats_first_page(first, [90, 89, 88])
    assert not repeats_first_page(first, [89, 88, 87])  # one test added above: a shift
    assert not repeats_first_page(first, [90])  # one item proves nothing
    assert not repeats_first_page([], [90, 89])


def test_every_list_request_the_toolkit_sends_carries_page(sandbox: Sandbox, db_path: Path) -> None:
    sent: list[httpx.URL] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/exploratory_tests"):
            sent.append(request.url)

    # The real client against the real sandbox, with a hook that sees each request go out.
    original = httpx.AsyncClient.__init__

    def with_hook(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("event_hooks", {"request": [record]})
        original(self, *args, **kwargs)

    product = largest(sandbox)
    sandbox.add_tests(product, 200 - len(sandbox.test_ids(product)), where="sorted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.AsyncClient, "__init__", with_hook)
        result = make_mirror(sandbox, db_path).sync()
    assert result.status == "success"
    assert sent and all("page" in url.params and "per_page" in url.params for url in sent)
    conn = sqlite3.connect(db_path)
    held = {r[0] for r in conn.execute("SELECT id FROM tests WHERE product_id = ?", (product,))}
    conn.close()
    assert held == set(sandbox.test_ids(product))  # all 200, not the newest 150


def test_a_sync_against_a_host_that_ignores_paging_fails_clearly_and_stores_nothing_twice(
    sandbox: Sandbox, db_path: Path
) -> None:
    sandbox.set_faults(ignore_paging=True)
    result = make_mirror(sandbox, db_path).sync()

    assert result.status != "success"
    long_ones = [p for p in sandbox.truth().products if len(sandbox.test_ids(p)) >= 25]
    for report in result.products:
        if report.product_id in long_ones:
            assert report.status == "failed"
            error = report.error or ""
            assert f"products/{report.product_id}/exploratory_tests" in error
            assert sandbox.url.rstrip("/") in error
            assert "ignores paging" in error
            assert "check the base URL" in error
    conn = sqlite3.connect(db_path)
    for product in long_ones:
        held = [r[0] for r in conn.execute("SELECT id FROM tests WHERE product_id = ?", (product,))]
        assert sorted(held) == sorted(sandbox.test_ids(product)[:25])  # page 1, once
    conn.close()
    assert sandbox.token not in repr(result.products)


def test_the_cli_exits_1_on_a_host_that_ignores_paging(sandbox: Sandbox, db_path: Path) -> None:
    sandbox.set_faults(ignore_paging=True)
    outcome = cli("sync", env=cli_env(sandbox, db_path))
    assert outcome.exit_code == 1
    assert "ignores paging" in outcome.output


def test_the_paging_error_is_a_service_error(sandbox: Sandbox) -> None:
    import asyncio

    product = largest(sandbox)
    sandbox.set_faults(ignore_paging=True)

    async def read() -> None:
        async with TestIOClient(sandbox.url, sandbox.token, FAST) as client:
            await client.tests_page(product, 1)
            await client.tests_page(product, 2)

    with pytest.raises(tt.PagingIgnored) as caught:
        asyncio.run(read())
    assert isinstance(caught.value, tt.ServiceError)
    assert caught.value.endpoint == f"products/{product}/exploratory_tests"
