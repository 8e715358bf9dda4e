"""The sandbox over real HTTP: envelopes, paging, quirks, faults, changes, determinism."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from testio_toolkit.sandbox import PRESETS, Faults, Sandbox, Truth
from testio_toolkit.sandbox.faults import FaultPlanner

STATUSES = {
    "initialized",
    "waiting",
    "running",
    "locked",
    "customer_finalized",
    "archived",
    "cancelled",
}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """One small sandbox for the read-only tests of this module; faults reset per test."""
    with Sandbox(preset="small", seed=0) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _no_faults(sb: Sandbox) -> Iterator[None]:
    sb.clear_faults()
    sb.reset_counters()
    yield
    sb.clear_faults()


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    """A small sandbox of its own, for tests that change the data."""
    with Sandbox(preset="small", seed=0) as sandbox:
        yield sandbox


def client_for(sandbox: Sandbox, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.url,
        headers={"Authorization": f"Token {sandbox.token}"},
        timeout=timeout,
    )


@pytest.fixture
def client(sb: Sandbox) -> Iterator[httpx.Client]:
    with client_for(sb) as c:
        yield c


def read_tests(c: httpx.Client, product_id: int, per_page: int = 25) -> tuple[list[Any], int]:
    """Every test of a product, page by page as a client must; and the requests made."""
    items: list[Any] = []
    page = 1
    while True:
        r = c.get(
            f"products/{product_id}/exploratory_tests", params={"page": page, "per_page": per_page}
        )
        r.raise_for_status()
        batch = r.json()["exploratory_tests"]
        items += batch
        if len(batch) < per_page:
            return items, page
        page += 1


def products_by_size(truth: Truth) -> list[int]:
    sizes = Counter(truth.product_of_test.values())
    return sorted(truth.products, key=lambda p: -sizes[p])


def not_a_json_object(body: bytes) -> bool:
    try:
        return not isinstance(json.loads(body), dict)
    except ValueError:
        return True


def instant(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def list_key(test: dict[str, Any]) -> tuple[float, int]:
    """The service's order as a descending sort key: end_at instant, nulls last, then id."""
    end = test["end_at"]
    return (float("-inf") if end is None else instant(end), test["id"])


def expected_order(tests: list[dict[str, Any]]) -> list[int]:
    """Ids in list order, computed from served objects: end_at desc, nulls last, id desc."""
    return [t["id"] for t in sorted(tests, key=list_key, reverse=True)]


# -- transport and auth ----------------------------------------------------------------


def test_url_keeps_the_api_path_prefix(sb: Sandbox, client: httpx.Client) -> None:
    assert sb.url == f"http://127.0.0.1:{sb.port}/customer/v2"
    assert client.get("products").status_code == 200
    headers = {"Authorization": f"Token {sb.token}"}
    assert httpx.get(f"http://127.0.0.1:{sb.port}/products", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Token wrong"}, {"Authorization": "Bearer sandbox-token"}],
    ids=["missing", "wrong-token", "bearer"],
)
def test_requests_without_the_right_token_answer_401(sb: Sandbox, headers: dict[str, str]) -> None:
    r = httpx.get(f"{sb.url}/products", headers=headers)
    assert r.status_code == 401
    assert "products" not in r.json()
    assert r.headers["WWW-Authenticate"].startswith("Token")


def test_unknown_paths_answer_404_and_other_verbs_405(client: httpx.Client) -> None:
    for path in ("nope", "products/abc", "products/1/sections", "bugs/1"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()
    assert client.post("products").status_code == 405


def test_keep_alive_serves_many_requests_on_one_connection(sb: Sandbox) -> None:
    with client_for(sb) as c:
        for _ in range(10):
            assert c.get("products").status_code == 200
    assert sb.connections_total == 1


# -- envelopes and objects -------------------------------------------------------------


def test_products_are_served_in_one_envelope(sb: Sandbox, client: httpx.Client) -> None:
    body = client.get("products").json()
    assert list(body) == ["products"]
    products = body["products"]
    assert len(products) == 3
    assert {p["id"]: p for p in products} == sb.truth().products
    for p in products:
        assert {"id", "name", "type", "description", "sections", "sections_with_default"} <= set(p)


def test_product_detail_has_its_envelope_and_unknown_ids_answer_404(
    sb: Sandbox, client: httpx.Client
) -> None:
    pid = next(iter(sb.truth().products))
    assert client.get(f"products/{pid}").json()["product"]["id"] == pid
    for path in ("products/1", "products/1/exploratory_tests", "exploratory_tests/1"):
        r = client.get(path)
        assert r.status_code == 404
        assert "error" in r.json()


def test_products_come_sectioned_unsectioned_and_sectioned_by_default_list_only(
    sb: Sandbox,
) -> None:
    products = list(sb.truth().products.values())
    plain = [p for p in products if not p["sections"] and len(p["sections_with_default"]) == 1]
    by_sections = [p for p in products if p["sections"]]
    by_default_list = [
        p for p in products if not p["sections"] and len(p["sections_with_default"]) > 1
    ]
    assert plain and by_sections and by_default_list


def test_list_items_lack_product_and_the_detail_adds_it(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    pid = products_by_size(truth)[1]
    items = client.get(f"products/{pid}/exploratory_tests").json()["exploratory_tests"]
    for item in items[:5]:
        assert "product" not in item
        detail = client.get(f"exploratory_tests/{item['id']}").json()["exploratory_test"]
        expected_product = {"id": pid, "name": truth.products[pid]["name"]}
        assert detail == item | {"product": expected_product}


def test_tests_carry_every_documented_field(sb: Sandbox) -> None:
    fields = {
        "id", "title", "status", "testing_type", "start_at", "end_at", "created_at",
        "goal_text", "instructions_text", "out_of_scope_text", "enable_low", "enable_high",
        "enable_critical", "created_by", "submitted_by", "test_environment", "features",
        "requirements",
    }  # fmt: skip
    for test in sb.truth().tests.values():
        assert fields <= set(test)
        for feature in test["features"]:
            assert {"id", "feature_id", "title"} <= set(feature)


def test_data_shows_every_status_testing_type_and_unicode(sb: Sandbox) -> None:
    tests = list(sb.truth().tests.values())
    assert {t["status"] for t in tests} == STATUSES
    assert Counter(t["status"] for t in tests).most_common(1)[0][0] == "archived"
    assert {t["testing_type"] for t in tests} == {"coverage", "focused", "rapid", "external", None}
    titles = "".join(t["title"] for t in tests)
    assert any(ord(ch) > 0xFFFF for ch in titles)  # emoji beyond the BMP
    assert any("\u4e00" <= ch <= "\u9fff" or "\u3040" <= ch <= "\u30ff" for ch in titles)
    assert any("\u0400" <= ch <= "\u04ff" for ch in titles)  # Cyrillic


def test_timestamps_carry_varying_utc_offsets(sb: Sandbox) -> None:
    keys = ("start_at", "end_at", "created_at")
    # Unscheduled tests have no start_at or end_at.
    stamps = [t[k] for t in sb.truth().tests.values() for k in keys if t[k] is not None]
    suffixes = {s[19:] for s in stamps}
    assert {"Z", "+00:00"} <= suffixes
    assert len(suffixes) >= 5
    assert all(datetime.fromisoformat(s).tzinfo is not None for s in stamps)


def test_test_ids_are_global_six_digit_ids_with_gaps(sb: Sandbox) -> None:
    ids = sorted(sb.truth().tests)
    assert 100_000 <= ids[0] < ids[-1] < 1_000_000
    assert ids[-1] - ids[0] + 1 > len(ids)


# -- paging and order ------------------------------------------------------------------


def test_per_page_defaults_to_25_and_without_page_the_newest_150_are_served(
    sb: Sandbox, client: httpx.Client
) -> None:
    pid = products_by_size(sb.truth())[0]
    default = client.get(f"products/{pid}/exploratory_tests", params={"page": 1}).json()
    explicit = client.get(
        f"products/{pid}/exploratory_tests", params={"page": 1, "per_page": 25}
    ).json()
    assert default == explicit
    assert len(default["exploratory_tests"]) == 25
    # The service's quirk (testio-api.md): no `page`, only its last 150 tests (here all 75).
    unpaged = client.get(f"products/{pid}/exploratory_tests", params={"per_page": 25}).json()
    assert [t["id"] for t in unpaged["exploratory_tests"]] == sb.test_ids(pid)[:150]


def test_exact_multiple_of_25_costs_an_extra_empty_page(sb: Sandbox, client: httpx.Client) -> None:
    pid = products_by_size(sb.truth())[0]
    items, pages = read_tests(client, pid)
    assert len(items) == 75
    assert pages == 4
    last = client.get(f"products/{pid}/exploratory_tests", params={"page": 4}).json()
    assert last == {"exploratory_tests": []}


def test_a_short_page_ends_the_list(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    pid = products_by_size(truth)[1]
    sizes = []
    for page in (1, 2, 3, 4):
        r = client.get(f"products/{pid}/exploratory_tests", params={"page": page})
        sizes.append(len(r.json()["exploratory_tests"]))
    assert sizes == [25, 25, 2, 0]


@pytest.mark.parametrize(
    "params",
    [{"page": 0}, {"page": -1}, {"page": "abc"}, {"page": ""}, {"per_page": 0}, {"per_page": 1.5}],
)
def test_bad_paging_values_answer_400(
    sb: Sandbox, client: httpx.Client, params: dict[str, Any]
) -> None:
    pid = next(iter(sb.truth().products))
    r = client.get(f"products/{pid}/exploratory_tests", params=params)
    assert r.status_code == 400
    assert "error" in r.json()


def test_list_is_ordered_by_end_instant_newest_first_despite_mixed_offsets(
    sb: Sandbox, client: httpx.Client
) -> None:
    truth = sb.truth()
    string_order_wrong = False
    for pid in truth.products:
        items, _ = read_tests(client, pid, per_page=10)
        keys = [list_key(t) for t in items]
        assert keys == sorted(keys, reverse=True)
        as_text = [t["end_at"] for t in items if t["end_at"] is not None]
        string_order_wrong |= as_text != sorted(as_text, reverse=True)
    # The offsets matter: sorting the raw strings would give another order.
    assert string_order_wrong


def test_ties_on_end_at_are_broken_by_id_descending(fresh: Sandbox) -> None:
    truth = fresh.truth()
    pid = products_by_size(truth)[1]
    low, high = sorted(t for t, p in truth.product_of_test.items() if p == pid)[:2]
    # One instant, written in two offsets.
    fresh.update_test(low, end_at="2031-01-01T13:00:00+01:00")
    fresh.update_test(high, end_at="2031-01-01T12:00:00Z")
    with client_for(fresh) as c:
        items = c.get(f"products/{pid}/exploratory_tests").json()["exploratory_tests"]
    assert [t["id"] for t in items[:2]] == [high, low]


def test_page_windows_follow_per_page(sb: Sandbox, client: httpx.Client) -> None:
    pid = products_by_size(sb.truth())[0]
    everything, _ = read_tests(client, pid, per_page=75)
    r = client.get(f"products/{pid}/exploratory_tests", params={"page": 3, "per_page": 7})
    assert r.json()["exploratory_tests"] == everything[14:21]


# -- bugs and features -----------------------------------------------------------------


def test_bugs_are_every_bug_of_the_listed_tests(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    ids = list(truth.tests)[:14]
    query = ",".join(map(str, [*ids, 1, ids[0]]))  # an unknown id and a duplicate
    bugs = client.get("bugs", params={"filter_test_cycle_ids": query}).json()["bugs"]
    expected = {b: v for b, v in truth.bugs.items() if v["test"]["id"] in ids}
    assert {b["id"]: b for b in bugs} == expected
    assert len(bugs) == len(expected)
    assert all(b["test"]["title"] == truth.tests[b["test"]["id"]]["title"] for b in bugs)


def test_bug_fields_vary_like_the_real_service(sb: Sandbox) -> None:
    bugs = list(sb.truth().bugs.values())
    required = {
        "id", "title", "severity", "status", "known", "created_at", "actual_result",
        "expected_result", "steps", "author", "test", "test_feature", "devices", "comments",
    }  # fmt: skip
    assert all(required <= set(b) for b in bugs)
    assert any("auto_accepted" not in b for b in bugs)
    assert any("auto_accepted" in b for b in bugs)
    assert any(b["steps"] is None for b in bugs)
    assert {b["status"] for b in bugs} == {"accepted", "rejected", "forwarded"}
    assert {"low", "high", "critical", "visual", "content"} <= {b["severity"] for b in bugs}


@pytest.mark.parametrize(
    "query", [{}, {"filter_test_cycle_ids": ""}, {"filter_test_cycle_ids": "1,x"}]
)
def test_bugs_without_valid_test_ids_answer_400(
    client: httpx.Client, query: dict[str, str]
) -> None:
    assert client.get("bugs", params=query).status_code == 400


def test_features_are_listed_per_product_or_per_section(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    for pid, product in truth.products.items():
        sectioned = bool(product["sections"]) or len(product["sections_with_default"]) > 1
        expected = {f for f, p in truth.product_of_feature.items() if p == pid}
        if not sectioned:
            served = client.get(f"products/{pid}/features").json()["features"]
            assert {f["id"]: f for f in served} == {f: truth.features[f] for f in expected}
            assert all(truth.section_of_feature[f] is None for f in expected)
            continue
        # The real service refuses the product-level list of a sectioned product.
        assert client.get(f"products/{pid}/features").status_code == 422
        seen: dict[int, Any] = {}
        for section in product["sections_with_default"]:
            r = client.get(f"products/{pid}/sections/{section['id']}/features")
            for feature in r.json()["features"]:
                assert truth.section_of_feature[feature["id"]] == section["id"]
                seen[feature["id"]] = feature
        assert seen == {f: truth.features[f] for f in expected}
        assert client.get(f"products/{pid}/sections/1/features").status_code == 404


def test_a_full_read_over_http_equals_truth(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    tests: dict[int, Any] = {}
    for pid in truth.products:
        items, _ = read_tests(client, pid)
        tests.update((t["id"], t) for t in items)
    assert tests == truth.tests
    bugs: dict[int, Any] = {}
    ids = list(tests)
    for start in range(0, len(ids), 15):
        query = ",".join(map(str, ids[start : start + 15]))
        bugs.update(
            (b["id"], b)
            for b in client.get("bugs", params={"filter_test_cycle_ids": query}).json()["bugs"]
        )
    assert bugs == truth.bugs


# -- faults ----------------------------------------------------------------------------


def test_poisoned_test_breaks_its_page_but_not_smaller_windows(
    sb: Sandbox, client: httpx.Client
) -> None:
    pid = products_by_size(sb.truth())[1]
    order = sb.test_ids(pid)
    poisoned = order[7]
    sb.faults.poisoned_test_ids = {poisoned}
    path = f"products/{pid}/exploratory_tests"
    r = client.get(path, params={"page": 1, "per_page": 25})
    assert r.status_code == 500
    assert "error" in r.json()
    assert client.get(path, params={"page": 2, "per_page": 25}).status_code == 200
    statuses = [
        client.get(path, params={"page": p, "per_page": 5}).status_code for p in (1, 2, 3, 4, 5)
    ]
    assert statuses == [200, 500, 200, 200, 200]
    salvaged = []
    for start in (0, 5, 6, 8):  # re-read offsets 0-4, then one by one around the broken one
        size = 5 if start == 0 else 1
        r = client.get(path, params={"page": start // size + 1, "per_page": size})
        if r.status_code == 200:
            salvaged += [t["id"] for t in r.json()["exploratory_tests"]]
    assert salvaged == [*order[:7], order[8]]
    assert client.get(f"exploratory_tests/{poisoned}").status_code == 500
    assert client.get(f"exploratory_tests/{order[8]}").status_code == 200


def test_rate_limit_next_answers_429_with_retry_after_in_seconds(
    sb: Sandbox, client: httpx.Client
) -> None:
    sb.set_faults(rate_limit_next=2, retry_after=2.5)
    for _ in range(2):
        r = client.get("products")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"  # whole seconds, rounded up
    assert client.get("products").status_code == 200
    assert sb.faults.rate_limit_next == 0


def test_rate_limit_retry_after_as_an_http_date(sb: Sandbox, client: httpx.Client) -> None:
    sb.set_faults(rate_limit_next=1, retry_after=2, retry_after_format="http-date")
    r = client.get("products")
    assert r.status_code == 429
    assert r.headers["Retry-After"].endswith(" GMT")
    # Measured from the response's own Date (the service's clock, like Retry-After).
    served_at = parsedate_to_datetime(r.headers["Date"]).timestamp()
    wait = parsedate_to_datetime(r.headers["Retry-After"]).timestamp() - served_at
    assert 1.0 <= wait <= 4.0  # both whole seconds: the date rounded up, Date truncated


def test_rate_faults_hit_their_fraction_and_repeat_with_the_same_seed(
    sb: Sandbox, client: httpx.Client
) -> None:
    def run() -> list[int]:
        sb.set_faults(rate_limit_rate=0.3, fault_seed=5)
        return [client.get("products").status_code for _ in range(120)]

    first = run()
    assert set(first) == {200, 429}
    assert 20 <= first.count(429) <= 55
    assert run() == first


def test_error_rate_answers_5xx_with_gateway_pages_for_502_and_504(
    sb: Sandbox, client: httpx.Client
) -> None:
    sb.set_faults(error_rate=1.0, fault_seed=1)
    seen = set()
    for _ in range(40):
        r = client.get("products")
        seen.add(r.status_code)
        if r.status_code in (502, 504):
            assert r.headers["Content-Type"].startswith("text/html")
            assert r.text.startswith("<html>")
        else:
            assert r.json()["status"] == r.status_code
    assert seen == {500, 502, 503, 504}


def test_fail_after_answers_503_once_n_requests_passed(sb: Sandbox, client: httpx.Client) -> None:
    client.get("products")  # requests before the fault was set do not count
    sb.faults.fail_after = 3
    assert [client.get("products").status_code for _ in range(5)] == [200] * 3 + [503] * 2
    sb.faults.fail_after = None
    assert client.get("products").status_code == 200
    sb.faults.fail_after = 1  # setting it again starts counting again
    assert [client.get("products").status_code for _ in range(2)] == [200, 503]


def test_bugs_524_over_a_number_of_test_ids(sb: Sandbox, client: httpx.Client) -> None:
    ids = ",".join(map(str, list(sb.truth().tests)[:16]))
    sb.faults.bugs_524_over = 15
    r = client.get("bugs", params={"filter_test_cycle_ids": ids})
    assert r.status_code == 524
    assert r.headers["Content-Type"].startswith("text/html")
    fewer = ",".join(ids.split(",")[:15])
    assert client.get("bugs", params={"filter_test_cycle_ids": fewer}).status_code == 200


def test_hang_next_outlasts_a_client_timeout_without_stalling_the_server(fresh: Sandbox) -> None:
    # A sandbox of its own: stopping it at the end wakes the handler that still sleeps.
    fresh.set_faults(hang_next=1, hang_seconds=4)
    with client_for(fresh, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.get("products")
    # The hanging handler still sleeps; another request is served meanwhile.
    with client_for(fresh, timeout=2) as c:
        assert c.get("products").status_code == 200
    assert fresh.max_in_flight == 2


def test_next_n_faults_count_exactly_under_concurrent_requests(sb: Sandbox) -> None:
    sb.faults.rate_limit_next = 10
    statuses: list[int] = []

    def one() -> None:
        with client_for(sb) as c:
            statuses.append(c.get("products").status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(statuses) == Counter({429: 10, 200: 10})


def test_drop_next_closes_the_connection_without_a_response(
    sb: Sandbox, client: httpx.Client
) -> None:
    sb.faults.drop_next = 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("products")
    assert client.get("products").status_code == 200


def test_garbage_next_answers_200_with_bodies_that_are_not_json_objects(
    sb: Sandbox, client: httpx.Client
) -> None:
    sb.faults.garbage_next = 12
    bodies = set()
    for _ in range(12):
        r = client.get("products")
        assert r.status_code == 200
        assert not_a_json_object(r.content)
        bodies.add(r.content)
    assert len(bodies) >= 3
    assert "products" in client.get("products").json()


@pytest.mark.parametrize(
    ("switch", "check"),
    [
        ("rate_limit_rate", lambda r: r.status_code == 429),
        ("error_rate", lambda r: r.status_code in (500, 502, 503, 504)),
        ("garbage_rate", lambda r: r.status_code == 200 and not_a_json_object(r.content)),
        ("hang_rate", lambda r: r.status_code == 200 and r.elapsed.total_seconds() >= 0.2),
    ],
)
def test_each_rate_fault_at_rate_one_hits_every_request(
    sb: Sandbox, client: httpx.Client, switch: str, check: Any
) -> None:
    sb.set_faults(**{switch: 1.0}, hang_seconds=0.2)
    for _ in range(3):
        assert check(client.get("products"))
    assert sb.counters["products"] == 3


def test_drop_rate_one_drops_every_request(sb: Sandbox, client: httpx.Client) -> None:
    sb.faults.drop_rate = 1.0
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("products")


def test_unauthorized_fault_refuses_even_the_right_token(sb: Sandbox, client: httpx.Client) -> None:
    sb.faults.unauthorized = True
    assert client.get("products").status_code == 401
    sb.faults.unauthorized = False
    assert client.get("products").status_code == 200


def test_latency_delays_requests_but_does_not_serialise_clients(sb: Sandbox) -> None:
    sb.set_faults(latency_ms=500)
    barrier = threading.Barrier(8)
    spans: list[tuple[float, float, int]] = []

    def one() -> None:
        with client_for(sb) as c:
            barrier.wait()
            start = time.perf_counter()
            status = c.get("products").status_code
            spans.append((start, time.perf_counter(), status))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for *_, status in spans] == [200] * 8
    assert all(end - start >= 0.5 for start, end, _ in spans)
    # Served one after another, eight requests would take 4 s at least.
    assert max(end for _, end, _ in spans) - min(start for start, _, _ in spans) < 4.0
    assert sb.max_in_flight >= 4


def test_latency_jitter_adds_up_to_its_amount() -> None:
    planner = FaultPlanner(Faults(latency_ms=100, latency_jitter_ms=50))
    delays = [planner.plan().delay for _ in range(50)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 1


def test_stop_wakes_requests_that_hang() -> None:
    sandbox = Sandbox(preset="small", faults=Faults(hang_next=1, hang_seconds=60)).start()
    errors: list[BaseException] = []

    def hanging() -> None:
        try:
            with client_for(sandbox, timeout=30) as c:
                c.get("products")
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=hanging)
    thread.start()
    time.sleep(0.3)
    sandbox.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(errors) == 1  # the connection was closed, no answer came


def test_constructor_latency_and_faults_are_used_and_clear_faults_keeps_latency() -> None:
    faults = Faults(error_rate=0.5)
    sandbox = Sandbox(preset="small", latency_ms=20, faults=faults)
    assert sandbox.faults is faults
    assert faults.latency_ms == 20
    sandbox.clear_faults()
    assert sandbox.faults.error_rate == 0
    assert sandbox.faults.latency_ms == 20


def test_set_faults_rejects_unknown_switches(sb: Sandbox) -> None:
    with pytest.raises(TypeError):
        sb.set_faults(no_such_fault=1)
    with pytest.raises(TypeError):
        sb.set_faults(_version=3)


# -- counters --------------------------------------------------------------------------


def test_counters_count_requests_per_endpoint_kind(sb: Sandbox, client: httpx.Client) -> None:
    truth = sb.truth()
    pid = products_by_size(truth)[1]  # unsectioned
    tid = next(iter(truth.tests))
    client.get("products")
    client.get(f"products/{pid}")
    client.get(f"products/{pid}/exploratory_tests")
    client.get(f"products/{pid}/exploratory_tests", params={"page": 2})
    client.get(f"exploratory_tests/{tid}")
    client.get(f"products/{pid}/features")
    client.get("unknown")
    sb.faults.rate_limit_next = 1
    assert client.get("bugs", params={"filter_test_cycle_ids": tid}).status_code == 429
    assert sb.counters == Counter(
        products=1, product=1, exploratory_tests=2, exploratory_test=1, features=1, bugs=1
    )
    assert sb.requests_total == 8
    sb.reset_counters()
    assert sb.counters == Counter()
    assert sb.requests_total == 0
    assert sb.max_in_flight == 0


# -- upstream changes ------------------------------------------------------------------


def test_added_tests_come_first_with_up_to_five_bugs_each(fresh: Sandbox) -> None:
    truth = fresh.truth()
    pid = products_by_size(truth)[1]
    latest = max(instant(t["end_at"]) for t in truth.tests.values() if t["end_at"])
    ids = fresh.add_tests(pid, count=3)
    with client_for(fresh) as c:
        items = c.get(f"products/{pid}/exploratory_tests").json()["exploratory_tests"]
        assert [t["id"] for t in items[:3]] == ids[::-1]
        assert all(t["status"] == "running" and instant(t["end_at"]) > latest for t in items[:3])
        query = ",".join(map(str, ids))
        bugs = c.get("bugs", params={"filter_test_cycle_ids": query}).json()["bugs"]
    assert all(n <= 5 for n in Counter(b["test"]["id"] for b in bugs).values())
    after = fresh.truth()
    assert set(after.tests) == set(truth.tests) | set(ids)
    assert all(after.product_of_test[t] == pid for t in ids)
    assert fresh.add_tests(pid, count=1, status="waiting") != ids


def test_updated_test_shows_in_list_detail_bugs_and_truth(fresh: Sandbox) -> None:
    truth = fresh.truth()
    bug = next(iter(truth.bugs.values()))
    tid = bug["test"]["id"]
    fresh.update_test(tid, status="archived", title="Neu ✨ тест")
    with client_for(fresh) as c:
        detail = c.get(f"exploratory_tests/{tid}").json()["exploratory_test"]
        pid = detail["product"]["id"]
        listed, _ = read_tests(c, pid)
        bugs = c.get("bugs", params={"filter_test_cycle_ids": tid}).json()["bugs"]
    assert (detail["status"], detail["title"]) == ("archived", "Neu ✨ тест")
    assert next(t for t in listed if t["id"] == tid)["title"] == "Neu ✨ тест"
    assert all(b["test"]["title"] == "Neu ✨ тест" for b in bugs)
    assert fresh.truth().tests[tid]["status"] == "archived"


def test_bug_updates_additions_and_deletions_are_served(fresh: Sandbox) -> None:
    truth = fresh.truth()
    first, second = list(truth.bugs)[:2]
    tid = truth.bugs[first]["test"]["id"]
    fresh.update_bug(first, status="accepted", known=True)
    added = fresh.add_bugs(tid, count=4)
    fresh.delete_bugs([second])
    with client_for(fresh) as c:
        tids = f"{tid},{truth.bugs[second]['test']['id']}"
        served = {
            b["id"]: b for b in c.get("bugs", params={"filter_test_cycle_ids": tids}).json()["bugs"]
        }
    assert served[first]["status"] == "accepted"
    assert served[first]["known"] is True
    assert len(added) == 4
    assert set(added) <= set(served)
    assert all(served[b]["test"]["id"] == tid for b in added)
    assert second not in served
    after = fresh.truth()
    assert after.bugs[first]["status"] == "accepted"
    assert set(added) <= set(after.bugs)
    assert second not in after.bugs


def test_deleted_tests_and_products_disappear(fresh: Sandbox) -> None:
    truth = fresh.truth()
    pid, other = products_by_size(truth)[1:3]
    gone = fresh.test_ids(pid)[:2]
    gone_bugs = {b for b, v in truth.bugs.items() if v["test"]["id"] in gone}
    fresh.delete_tests(gone)
    fresh.delete_product(other)
    with client_for(fresh) as c:
        assert c.get(f"exploratory_tests/{gone[0]}").status_code == 404
        listed, _ = read_tests(c, pid)
        assert not {t["id"] for t in listed} & set(gone)
        query = ",".join(map(str, gone))
        assert c.get("bugs", params={"filter_test_cycle_ids": query}).json() == {"bugs": []}
        assert c.get(f"products/{other}").status_code == 404
        assert c.get(f"products/{other}/exploratory_tests").status_code == 404
        assert other not in {p["id"] for p in c.get("products").json()["products"]}
    after = fresh.truth()
    assert not set(gone) & set(after.tests)
    assert not gone_bugs & set(after.bugs)
    assert other not in after.products
    assert other not in after.product_of_test.values()
    assert other not in after.product_of_feature.values()


def after_tests_unchanged(sb: Sandbox, before: Any) -> bool:
    after = sb.truth()
    return after.tests == before.tests and after.bugs == before.bugs


def test_a_feature_update_is_served_in_its_list_and_truth_and_tests_keep_their_snapshot(
    fresh: Sandbox,
) -> None:
    truth = fresh.truth()
    tid, test = next((t, v) for t, v in truth.tests.items() if v["features"])
    fid = test["features"][0]["feature_id"]
    pid = truth.product_of_feature[fid]
    section = truth.section_of_feature[fid]
    fresh.update_feature(fid, title="Kasse 2.0 ✨")
    with client_for(fresh) as c:
        path = f"products/{pid}" + (f"/sections/{section}" if section else "") + "/features"
        listed = {f["id"]: f for f in c.get(path).json()["features"]}
        detail = c.get(f"exploratory_tests/{tid}").json()["exploratory_test"]
    assert listed[fid]["title"] == "Kasse 2.0 ✨"
    snapshot = next(f for f in detail["features"] if f["feature_id"] == fid)
    assert snapshot["title"] == test["features"][0]["title"] != "Kasse 2.0 ✨"
    assert after_tests_unchanged(fresh, truth)
    after = fresh.truth()
    assert after.features[fid]["title"] == "Kasse 2.0 ✨"
    assert {k: v for k, v in after.features[fid].items() if k != "title"} == {
        k: v for k, v in truth.features[fid].items() if k != "title"
    }


def test_changes_to_unknown_ids_raise_lookup_error(fresh: Sandbox) -> None:
    for change in (
        lambda: fresh.update_feature(1, title="x"),
        lambda: fresh.update_test(1, status="archived"),
        lambda: fresh.update_bug(1, status="accepted"),
        lambda: fresh.delete_tests([1]),
        lambda: fresh.add_tests(1),
    ):
        with pytest.raises(LookupError):
            change()


# -- determinism and presets -----------------------------------------------------------


def test_truth_of_some_products_holds_only_theirs(sb: Sandbox) -> None:
    full = sb.truth()
    pid = products_by_size(full)[2]
    part = sb.truth([pid])
    assert set(part.products) == {pid}
    assert part.tests == {t: v for t, v in full.tests.items() if full.product_of_test[t] == pid}
    assert part.bugs == {b: v for b, v in full.bugs.items() if v["test"]["id"] in part.tests}
    assert set(part.features) == {f for f, p in full.product_of_feature.items() if p == pid}


def test_same_preset_and_seed_give_the_same_data() -> None:
    first = Sandbox(preset="small", seed=3).truth()
    assert Sandbox(preset="small", seed=3).truth() == first
    assert Sandbox(preset="small", seed=4).truth() != first


def test_medium_has_a_product_of_over_1300_tests_that_reads_completely() -> None:
    with Sandbox(preset="medium") as medium, client_for(medium) as c:
        products = c.get("products").json()["products"]
        assert len(products) == PRESETS["medium"].products
        biggest = max(products, key=lambda p: len(medium.test_ids(p["id"])))
        items, pages = read_tests(c, biggest["id"])
    assert len(items) > 1300
    assert len({t["id"] for t in items}) == len(items)
    assert pages == len(items) // 25 + 1


@pytest.mark.timeout(60)
def test_large_preset_starts_and_serves_without_generating_everything() -> None:
    with Sandbox(preset="large") as large, client_for(large) as c:
        products = c.get("products").json()["products"]
        assert len(products) == PRESETS["large"].products
        pid = products[0]["id"]
        assert len(large.test_ids(pid)) == PRESETS["large"].largest
        page = c.get(f"products/{pid}/exploratory_tests").json()["exploratory_tests"]
        query = ",".join(str(t["id"]) for t in page[:15])
        assert "bugs" in c.get("bugs", params={"filter_test_cycle_ids": query}).json()
