"""Tests for testio_toolkit.client: pure decisions first, then the client over MockTransport.

Pauses are measured with a fake clock and sleep given to the client (``Clock``), so no test waits
for a real Retry-After; backoff is made tiny through ClientOptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from testio_toolkit.client import (
    BugBatchSizer,
    ClientOptions,
    Clock,
    GarbageBody,
    Outcome,
    TestIOClient,
    attempts_allowed,
    backoff_delay,
    check_token,
    chunked,
    classify_status,
    dedupe_by_id,
    describe_request,
    normalise_base_url,
    rate_limit_pause,
    retry_after_seconds,
    unique_ids,
    unwrap_envelope,
)
from testio_toolkit.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceError,
)

BASE = "https://api.example.test/customer/v2"
TOKEN = "s3cr3t-t0ken-4f9a1c"
PREFIX = "/customer/v2/"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_client(handler: Handler, clock: Clock | None = None, **options: Any) -> TestIOClient:
    settings: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.002}
    settings.update(options)
    return TestIOClient(
        BASE, TOKEN, ClientOptions(**settings), transport=httpx.MockTransport(handler), clock=clock
    )


def ok(envelope: str, payload: Any) -> httpx.Response:
    return httpx.Response(200, json={envelope: payload})


def rel(request: httpx.Request) -> str:
    """The request path relative to the base URL's prefix."""
    assert request.url.path.startswith(PREFIX)
    return request.url.path[len(PREFIX) :]


class FakeTime:
    """A monotonic clock that only moves when someone sleeps.

    A sleeper first lets every other ready task run at the current instant (so a request
    that ignores a pause would be sent "now"), then moves the clock to its wake-up time.
    """

    def __init__(self, wall: datetime | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.wall = wall or datetime.now(UTC)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + seconds
        for _ in range(50):
            await asyncio.sleep(0)
        self.now = max(self.now, wake)

    def clock(self) -> Clock:
        """The client's clock: this one's time, its sleep, no jitter."""
        return Clock(
            monotonic=self.monotonic, sleep=self.sleep, wall=lambda: self.wall, random=lambda: 0.0
        )


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
        (524, Outcome.RETRY),
        (408, Outcome.RETRY),
        (400, Outcome.REFUSED),
        (401, Outcome.REFUSED),
        (403, Outcome.REFUSED),
        (404, Outcome.REFUSED),
        (302, Outcome.REFUSED),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_attempts_allowed_gives_500_its_own_smaller_budget() -> None:
    options = ClientOptions(max_attempts=5, max_attempts_500=2)
    assert attempts_allowed(500, options, salvageable=True) == 2
    assert attempts_allowed(500, options) == 5  # nobody can salvage a detail or bug batch
    assert attempts_allowed(503, options, salvageable=True) == 5
    assert attempts_allowed(503, options) == 5
    assert attempts_allowed(524, options) == 5
    assert attempts_allowed(None, options) == 5


def test_backoff_delay_doubles_then_caps_and_jitters_between_half_and_full() -> None:
    options = ClientOptions(backoff_base=0.5, backoff_max=20.0)
    assert [backoff_delay(n, options, jitter=1.0) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(10, options, jitter=1.0) == 20.0
    assert backoff_delay(1000, options, jitter=1.0) == 20.0
    assert backoff_delay(2, options, jitter=0.0) == 1.0


def test_retry_after_seconds_reads_seconds_and_http_dates() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 3 ", now) == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0  # already past


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "Wed, 99 Foo 2015"])
def test_retry_after_seconds_is_none_when_missing_or_unreadable(value: str | None) -> None:
    assert retry_after_seconds(value, datetime.now(UTC)) is None


def test_rate_limit_pause_measures_http_date_from_the_response_date() -> None:
    # The laptop's clock is an hour behind; the response's Date header is what counts.
    pause = rate_limit_pause(
        "Wed, 21 Oct 2015 07:28:12 GMT",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        wall_now=datetime(2015, 10, 21, 6, 28, 0, tzinfo=UTC),
        waits_so_far=0,
        options=ClientOptions(),
        jitter=0.0,
    )
    assert pause == 12.0


def test_rate_limit_pause_backs_off_without_retry_after_and_is_capped() -> None:
    options = ClientOptions(backoff_base=0.5, max_retry_after=60.0)
    now = datetime.now(UTC)
    kwargs: dict[str, Any] = {"wall_now": now, "options": options, "jitter": 1.0}
    assert rate_limit_pause(None, None, waits_so_far=0, **kwargs) == 0.5
    assert rate_limit_pause("garbage", None, waits_so_far=3, **kwargs) == 4.0
    assert rate_limit_pause("3600", None, waits_so_far=0, **kwargs) == 60.0


def test_unwrap_envelope_returns_the_payload() -> None:
    assert unwrap_envelope(b'{"products": [{"id": 1}]}', "products", "list") == [{"id": 1}]
    assert unwrap_envelope('{"product": {"name": "Café 🚀"}}'.encode(), "product", "object") == {
        "name": "Café 🚀"
    }
    assert unwrap_envelope(b'{"x": 3}', "x") == 3  # no shape: anything inside the envelope


@pytest.mark.parametrize(
    ("body", "shape", "says"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "list", "not JSON"),
        (b"", "list", "not JSON"),
        (b"\xff\xfe\x00garbage", "list", "not JSON"),
        (b"[1, 2, 3]", "list", "without the 'products' envelope"),
        (b'{"items": []}', "list", "without the 'products' envelope"),
        (b'{"products": null}', "list", "not a list of JSON objects"),
        (b'{"products": [1, 2]}', "list", "not a list of JSON objects"),
        (b'{"products": []}', "object", "not a JSON object"),
    ],
)
def test_unwrap_envelope_rejects_garbage(body: bytes, shape: Any, says: str) -> None:
    with pytest.raises(GarbageBody, match=says):
        unwrap_envelope(body, "products", shape)


def test_describe_request_names_page_and_tests() -> None:
    assert describe_request("products") == "GET products"
    assert (
        describe_request("products/12/exploratory_tests", {"page": 3, "per_page": 25})
        == "GET products/12/exploratory_tests page 3"
    )
    assert describe_request("bugs", {"filter_test_cycle_ids": "1,2"}) == "GET bugs for tests 1,2"


def test_chunked_unique_ids_and_dedupe_by_id() -> None:
    assert chunked(list(range(1, 41)), 15) == [
        list(range(1, 16)),
        list(range(16, 31)),
        list(range(31, 41)),
    ]
    assert unique_ids([3, 1, 3, 2, 1]) == [3, 1, 2]
    assert dedupe_by_id([{"id": 1, "v": "a"}, {"id": 2}, {"id": 1, "v": "b"}, {"x": 0}]) == [
        {"id": 1, "v": "a"},
        {"id": 2},
        {"x": 0},
    ]


def test_normalise_base_url_keeps_the_path_prefix_with_a_trailing_slash() -> None:
    assert normalise_base_url(BASE) == BASE + "/"
    assert normalise_base_url(BASE + "/") == BASE + "/"
    assert normalise_base_url(" http://127.0.0.1:5000/customer/v2 ") == (
        "http://127.0.0.1:5000/customer/v2/"
    )


@pytest.mark.parametrize(
    "url", ["ftp://api.test.io/v2", "api.test.io/customer/v2", "https://u:p@api.test.io/v2"]
)
def test_normalise_base_url_rejects_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalise_base_url(url)
    assert "u:p" not in str(caught.value)


def test_check_token_strips_and_refuses_unusable_tokens_without_quoting_them() -> None:
    assert check_token(f" {TOKEN}\n") == TOKEN
    for bad in ["", "   ", f"{TOKEN} extra", f"{TOKEN}\x00", f"{TOKEN}é"]:
        with pytest.raises(ConfigError) as caught:
            check_token(bad)
        assert TOKEN not in str(caught.value)


def test_client_options_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        ClientOptions(concurrency=0)
    with pytest.raises(ConfigError, match="timeout"):
        ClientOptions(timeout=-1)


# ---------------------------------------------------------------------------------------------
# Requests: URLs, header, envelopes
# ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_endpoint_keeps_the_prefix_sends_the_token_and_unwraps() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = rel(request)
        if path == "products":
            return ok("products", [{"id": 12}])
        if path == "products/12":
            return ok("product", {"id": 12, "sections": []})
        if path == "products/12/exploratory_tests":
            return ok("exploratory_tests", [{"id": 7}])
        if path == "exploratory_tests/7":
            return ok("exploratory_test", {"id": 7, "product": {"id": 12}})
        if path == "bugs":
            return ok("bugs", [{"id": 99, "test": {"id": 7}}])
        if path.endswith("/features"):
            return ok("features", [{"id": 5, "title": path}])
        return httpx.Response(404)

    async with make_client(handler) as client:
        assert await client.products() == [{"id": 12}]
        assert await client.product(12) == {"id": 12, "sections": []}
        assert await client.tests_page(12, 3) == [{"id": 7}]
        assert await client.test(7) == {"id": 7, "product": {"id": 12}}
        assert await client.bugs([7]) == [{"id": 99, "test": {"id": 7}}]
        assert await client.features(12) == [{"id": 5, "title": "products/12/features"}]
        section = await client.features(12, section_id=4)
        assert section == [{"id": 5, "title": "products/12/sections/4/features"}]
        assert await client.get("/products/12", envelope="product") == {
            "id": 12,
            "sections": [],
        }

    assert all(str(r.url).startswith(BASE + "/") for r in seen)
    assert {r.headers["Authorization"] for r in seen} == {f"Token {TOKEN}"}
    page = seen[2]
    assert (page.url.params["page"], page.url.params["per_page"]) == ("3", "25")
    assert seen[4].url.params["filter_test_cycle_ids"] == "7"


@pytest.mark.anyio
async def test_tests_page_passes_a_smaller_per_page() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return ok("exploratory_tests", [])

    async with make_client(handler) as client:
        assert await client.tests_page(12, page=9, per_page=5) == []
    assert dict(seen[0].params) == {"page": "9", "per_page": "5"}


@pytest.mark.anyio
async def test_stats_count_requests_by_endpoint_kind_retries_included() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if rel(request) == "products" and calls == 1:
            return httpx.Response(503)
        if rel(request) == "products":
            return ok("products", [])
        return ok("exploratory_tests", [])

    async with make_client(handler) as client:
        await client.products()
        await client.tests_page(1, 1)
        await client.tests_page(1, 2)
    assert client.stats.requests == 4
    assert client.stats.by_endpoint == {"products": 2, "exploratory_tests": 2}
    assert client.stats.retries == 1
    assert client.stats.rate_limit_waits == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "says"),
    [
        (
            httpx.Response(200, html="<html>Bad gateway</html>"),
            "answered something that is not JSON",
        ),
        (httpx.Response(200, json=[{"id": 1}]), "answered without the 'products' envelope"),
        (httpx.Response(200, content=b""), "answered something that is not JSON"),
        (httpx.Response(200, json={"data": []}), "answered without the 'products' envelope"),
    ],
    ids=["html", "json-list", "empty", "missing-key"],
)
async def test_garbage_bodies_are_retried_then_service_error(
    response: httpx.Response, says: str
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return response

    async with make_client(handler, max_attempts=4) as client:
        with pytest.raises(ServiceError) as caught:
            await client.products()
    assert calls == 4
    assert str(caught.value) == f"GET products failed: the service {says} after 4 attempts"
    assert caught.value.endpoint == "products"


@pytest.mark.anyio
async def test_a_garbage_body_followed_by_a_good_one_recovers() -> None:
    answers = [httpx.Response(200, html="<h1>oops</h1>"), ok("products", [{"id": 1}])]

    async with make_client(lambda request: answers.pop(0)) as client:
        assert await client.products() == [{"id": 1}]
    assert client.stats.retries == 1


# ---------------------------------------------------------------------------------------------
# Status mapping and attempt budgets
# ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error", "says"),
    [
        (401, AuthenticationError, "the service refused the API token (401)"),
        (403, PermissionDenied, "the API token has no access to this object (403)"),
        (404, NotFound, "no such object (404)"),
        (400, ApiError, "HTTP 400"),
    ],
)
async def test_refusals_map_to_their_error_without_retry(
    status: int, error: type[ApiError], says: str
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"error": "nope"})

    async with make_client(handler) as client:
        with pytest.raises(error) as caught:
            await client.product(12)
    assert type(caught.value) is error
    assert str(caught.value).startswith(f"GET products/12 failed: {says}")
    assert (caught.value.endpoint, caught.value.status_code) == ("products/12", status)
    assert calls == 1


@pytest.mark.anyio
async def test_not_found_is_also_a_lookup_error() -> None:
    async with make_client(lambda request: httpx.Response(404)) as client:
        with pytest.raises(LookupError):
            await client.test(1)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [502, 503, 504, 524])
async def test_gateway_errors_get_max_attempts_then_service_error(status: int) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, html="<html>gateway</html>")

    async with make_client(handler, max_attempts=5) as client:
        with pytest.raises(ServiceError) as caught:
            await client.tests_page(12, 3)
    assert calls == 5
    assert str(caught.value) == (
        f"GET products/12/exploratory_tests page 3 failed: HTTP {status} after 5 attempts"
    )
    assert caught.value.status_code == status
    assert caught.value.endpoint == "products/12/exploratory_tests"
    assert (client.stats.requests, client.stats.retries) == (5, 4)


@pytest.mark.anyio
async def test_a_persistent_500_fails_fast_after_max_attempts_500() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500)

    async with make_client(handler, max_attempts=5, max_attempts_500=2) as client:
        with pytest.raises(ServiceError) as caught:
            await client.tests_page(12, 3)
    assert calls == 2
    assert caught.value.status_code == 500
    assert str(caught.value).endswith("HTTP 500 after 2 attempts")


@pytest.mark.anyio
async def test_a_500_outside_list_pages_gets_the_full_budget() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500)

    async with make_client(handler, max_attempts=5, max_attempts_500=2) as client:
        with pytest.raises(ServiceError):
            await client.test(77)
    assert calls == 5


@pytest.mark.anyio
async def test_a_503_that_clears_returns_the_data() -> None:
    answers = [httpx.Response(503), httpx.Response(503), ok("product", {"id": 3})]

    async with make_client(lambda request: answers.pop(0)) as client:
        assert await client.product(3) == {"id": 3}
    assert client.stats.retries == 2


@pytest.mark.anyio
async def test_backoff_sleeps_grow_between_attempts() -> None:
    fake = FakeTime()
    async with make_client(
        lambda request: httpx.Response(503), fake.clock(), backoff_base=1.0, backoff_max=100.0
    ) as client:
        with pytest.raises(ServiceError):
            await client.products()
    # jitter 0 picks half of base * 2**n
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "says"),
    [
        (httpx.ReadTimeout, "timed out (ReadTimeout)"),
        (httpx.ConnectTimeout, "timed out (ConnectTimeout)"),
        (httpx.ConnectError, "could not connect (ConnectError)"),
        (httpx.RemoteProtocolError, "the connection was dropped (RemoteProtocolError)"),
        (httpx.ReadError, "the connection was dropped (ReadError)"),
    ],
)
async def test_timeouts_and_dropped_connections_are_retried_then_service_error(
    error: type[httpx.TransportError], says: str
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise error("boom", request=request)

    async with make_client(handler, max_attempts=3) as client:
        with pytest.raises(ServiceError) as caught:
            await client.products()
    assert calls == 3
    assert str(caught.value).startswith(f"GET products failed: {says}")
    assert "after 3 attempts" in str(caught.value)
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, error)


@pytest.mark.anyio
async def test_a_dropped_connection_followed_by_an_answer_recovers() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return ok("products", [])

    async with make_client(handler) as client:
        assert await client.products() == []
    assert calls == 2


@pytest.mark.anyio
async def test_real_sockets_timeout_and_dropped_connection_become_service_errors() -> None:
    """The timeout option reaches the network layer, and a server that hangs up is survived."""
    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.close()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    # Long enough that a loaded machine still connects and sends in time, so the timeout
    # that fires is the read's.
    options = ClientOptions(timeout=0.5, max_attempts=2, backoff_base=0.001)
    for serve, says in [(hang, "timed out (ReadTimeout)"), (hang_up, "connection was dropped")]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with TestIOClient(f"http://127.0.0.1:{port}/customer/v2", TOKEN, options) as c:
                with pytest.raises(ServiceError) as caught:
                    await c.products()
        finally:
            release.set()
            server.close()
            await server.wait_closed()
        assert says in str(caught.value)
        assert str(caught.value).endswith("after 2 attempts")
        assert caught.value.status_code is None


# ---------------------------------------------------------------------------------------------
# 429: Retry-After, the shared pause, the budget
# ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_429_with_retry_after_seconds_pauses_that_long() -> None:
    fake = FakeTime()
    sent_at: list[float] = []
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), ok("products", [])]

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake.now)
        return answers.pop(0)

    async with make_client(handler, fake.clock()) as client:
        assert await client.products() == []
    assert fake.sleeps == [7.0]
    assert sent_at == [1000.0, 1007.0]
    assert (client.stats.rate_limit_waits, client.stats.retries, client.stats.requests) == (1, 0, 2)


@pytest.mark.anyio
async def test_429_with_an_http_date_pauses_until_that_date() -> None:
    answers = [
        httpx.Response(
            429,
            headers={
                "Retry-After": "Wed, 21 Oct 2015 07:28:12 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
        ),
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:40 GMT"}),
        ok("products", []),
    ]

    # The second 429 has no Date header: the local wall clock is used instead.
    fake = FakeTime(wall=datetime(2015, 10, 21, 7, 28, 15, tzinfo=UTC))
    async with make_client(lambda request: answers.pop(0), fake.clock()) as client:
        assert await client.products() == []
    assert fake.sleeps == pytest.approx([12.0, 25.0])


@pytest.mark.anyio
async def test_429_without_retry_after_backs_off() -> None:
    answers = [httpx.Response(429), ok("products", [])]

    fake = FakeTime()
    async with make_client(
        lambda request: answers.pop(0), fake.clock(), backoff_base=2.0, backoff_max=100.0
    ) as client:
        await client.products()
    assert fake.sleeps == [1.0]  # half of base * 2**0 at jitter 0


@pytest.mark.anyio
async def test_429_pause_is_capped_at_max_retry_after() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "86400"}), ok("products", [])]

    fake = FakeTime()
    async with make_client(
        lambda request: answers.pop(0), fake.clock(), max_retry_after=60.0
    ) as client:
        await client.products()
    assert fake.sleeps == [60.0]


@pytest.mark.anyio
async def test_429s_do_not_use_up_the_5xx_attempt_budget() -> None:
    statuses = [503, 429, 429, 429, 503, 503, 503]
    answers = [httpx.Response(s, headers={"Retry-After": "1"}) for s in statuses]
    answers.append(ok("products", [{"id": 1}]))

    clock = FakeTime().clock()
    async with make_client(lambda request: answers.pop(0), clock, max_attempts=5) as client:
        assert await client.products() == [{"id": 1}]
    assert client.stats.rate_limit_waits == 3
    assert client.stats.retries == 4


@pytest.mark.anyio
async def test_429s_beyond_max_rate_limit_waits_raise_rate_limited() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": "2"})

    fake = FakeTime()
    async with make_client(handler, fake.clock(), max_rate_limit_waits=3) as client:
        with pytest.raises(RateLimited) as caught:
            await client.product(5)
    assert calls == 4
    assert fake.sleeps == [2.0, 2.0, 2.0]
    assert client.stats.rate_limit_waits == 3
    assert str(caught.value) == "GET products/5 failed: still rate-limited (429) after 3 waits"
    assert caught.value.status_code == 429


@pytest.mark.anyio
async def test_a_429_pauses_every_request_of_the_client() -> None:
    limited = asyncio.Event()
    sent_at: dict[str, float] = {}
    fake = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        path = rel(request)
        if path == "products/1" and path not in sent_at:
            sent_at[path] = fake.now
            limited.set()
            return httpx.Response(429, headers={"Retry-After": "5"})
        sent_at.setdefault(path, fake.now)
        return ok("product", {"id": int(path.split("/")[1])})

    async with make_client(handler, fake.clock(), concurrency=4) as client:

        async def after_the_429(product_id: int) -> dict[str, Any]:
            await limited.wait()
            return await client.product(product_id)

        results = await asyncio.gather(client.product(1), after_the_429(2), after_the_429(3))
    assert [r["id"] for r in results] == [1, 2, 3]
    assert sent_at["products/1"] == 1000.0
    # Requests 2 and 3 never got a 429 themselves, yet waited out the pause.
    assert sent_at["products/2"] >= 1005.0
    assert sent_at["products/3"] >= 1005.0
    assert client.stats.rate_limit_waits == 1


@pytest.mark.anyio
async def test_a_request_queued_for_a_slot_during_a_429_still_waits_out_the_pause() -> None:
    sent_at: list[tuple[str, float]] = []
    fake = FakeTime()
    first = True

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal first
        sent_at.append((rel(request), fake.now))
        if first:
            first = False
            # Answer slowly, so the second request is already queued for the only slot
            # (past the pause check) when this 429 arrives.
            for _ in range(10):
                await asyncio.sleep(0)
            return httpx.Response(429, headers={"Retry-After": "9"})
        return ok("product", {})

    async with make_client(handler, fake.clock(), concurrency=1) as client:
        await asyncio.gather(client.product(1), client.product(2))
    assert sent_at[0] == ("products/1", 1000.0)
    assert all(at >= 1009.0 for _, at in sent_at[1:])


# ---------------------------------------------------------------------------------------------
# Bugs: batches, halving, dedupe
# ---------------------------------------------------------------------------------------------


def bugs_for(request: httpx.Request) -> list[int]:
    assert rel(request) == "bugs"
    return [int(i) for i in request.url.params["filter_test_cycle_ids"].split(",")]


@pytest.mark.anyio
async def test_bugs_asks_for_at_most_15_tests_per_request() -> None:
    asked: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = bugs_for(request)
        asked.append(ids)
        return ok("bugs", [{"id": 10_000 + i, "test": {"id": i}} for i in ids])

    async with make_client(handler) as client:
        bugs = await client.bugs(list(range(1, 41)))
    assert sorted(len(ids) for ids in asked) == [10, 15, 15]
    assert sorted(i for ids in asked for i in ids) == list(range(1, 41))
    assert [bug["test"]["id"] for bug in bugs] == list(range(1, 41))
    assert client.stats.by_endpoint["bugs"] == 3


@pytest.mark.anyio
async def test_bugs_batches_are_requested_concurrently() -> None:
    all_in = asyncio.Event()
    waiting = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            all_in.set()
        # Only answers once all three batches are in flight at the same time.
        await asyncio.wait_for(all_in.wait(), timeout=5)
        return ok("bugs", [])

    async with make_client(handler, bug_batch_size=2) as client:
        assert await client.bugs([1, 2, 3, 4, 5, 6]) == []
    assert client.stats.max_in_flight == 3


@pytest.mark.anyio
async def test_bugs_with_no_tests_sends_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with make_client(handler) as client:
        assert await client.bugs([]) == []
    assert client.stats.requests == 0


@pytest.mark.anyio
async def test_bugs_are_returned_once_each_and_tests_asked_once_each() -> None:
    asked: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = bugs_for(request)
        asked.append(ids)
        # The service repeats bug 1 in every batch.
        return ok("bugs", [{"id": 1}, *({"id": 100 + i} for i in ids)])

    async with make_client(handler, bug_batch_size=2) as client:
        bugs = await client.bugs([5, 6, 5, 7])
    assert sorted(i for ids in asked for i in ids) == [5, 6, 7]
    assert sorted(bug["id"] for bug in bugs) == [1, 105, 106, 107]


@pytest.mark.anyio
async def test_bugs_batches_answered_524_teach_the_client_a_batch_size_it_keeps() -> None:
    asked: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = bugs_for(request)
        asked.append(ids)
        if len(ids) > 4:
            return httpx.Response(524, html="<html>A timeout occurred</html>")
        return ok("bugs", [{"id": 1000 + i} for i in ids])

    async with make_client(handler) as client:
        bugs = await client.bugs(list(range(1, 16)))
        bugs += await client.bugs(list(range(16, 31)))
        asked_before = len(asked)
        bugs += await client.bugs(list(range(31, 46)))
    assert sorted(bug["id"] for bug in bugs) == [1000 + i for i in range(1, 46)]
    # 15 fails, then a binary search (7 fails, 3 works, 5 fails, 4 works): each heavy size
    # is asked once in all, not once per batch.
    assert sorted(len(ids) for ids in asked if len(ids) > 4) == [5, 7, 15]
    # Learned once: the last batch is asked 4 at a time straight away.
    assert sorted(len(ids) for ids in asked[asked_before:]) == [3, 4, 4, 4]
    assert client.stats.retries == 0


def test_bug_batch_sizer_searches_between_what_worked_and_what_did_not() -> None:
    sizer = BugBatchSizer(15)
    assert (sizer.size, sizer.is_probe(15)) == (15, False)  # all is well: no probes
    sizer.too_heavy(15)
    assert (sizer.size, sizer.is_probe(7)) == (7, True)
    sizer.worked(7)
    assert (sizer.size, sizer.is_probe(7), sizer.is_probe(11)) == (11, False, True)
    sizer.too_heavy(11)
    assert sizer.size == 9
    sizer.too_heavy(9)
    assert sizer.size == 8
    sizer.worked(8)
    assert sizer.size == 8  # settled: 8 works, 9 does not


def test_bug_batch_sizer_grows_back_after_successes_less_eagerly_each_time() -> None:
    sizer = BugBatchSizer(15, grow_after=3)
    sizer.too_heavy(15)
    sizer.too_heavy(7)
    sizer.worked(3)
    sizer.too_heavy(5)
    sizer.worked(4)
    assert sizer.size == 4
    for _ in range(3):
        sizer.worked(4)
    assert sizer.size == 7  # probing again between 4 and 10
    sizer.too_heavy(7)
    sizer.too_heavy(5)
    assert sizer.size == 4
    for _ in range(5):
        sizer.worked(4)
    assert sizer.size == 4  # the next rise waits twice as long
    sizer.worked(4)
    assert sizer.size == 7
    sizer.worked(7)
    sizer.worked(10)
    sizer.worked(15)
    assert (sizer.size, sizer.is_probe(15)) == (15, False)


@pytest.mark.anyio
async def test_bugs_batches_that_time_out_are_asked_again_in_halves() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = bugs_for(request)
        if len(ids) > 2:
            raise httpx.ReadTimeout("the origin is slow", request=request)
        return ok("bugs", [{"id": i} for i in ids])

    async with make_client(handler) as client:
        bugs = await client.bugs([1, 2, 3, 4, 5])
    assert sorted(bug["id"] for bug in bugs) == [1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_bugs_for_a_single_test_still_524_raise_service_error() -> None:
    asked: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = bugs_for(request)
        asked.append(ids)
        if 3 in ids:
            return httpx.Response(524)
        return ok("bugs", [])

    async with make_client(handler, max_attempts=3) as client:
        with pytest.raises(ServiceError) as caught:
            await client.bugs([1, 2, 3, 4])
    assert caught.value.status_code == 524
    assert caught.value.endpoint == "bugs"
    assert str(caught.value) == "GET bugs for tests 3 failed: HTTP 524 after 3 attempts"
    assert asked.count([3]) == 3  # the single id gets the full retry budget


# ---------------------------------------------------------------------------------------------
# Concurrency, lifecycle, and the token
# ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_in_flight_never_exceed_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return ok("product", {})

    async with make_client(handler, concurrency=3) as client:
        await asyncio.gather(*(client.product(i) for i in range(20)))
    assert peak == 3
    assert client.stats.max_in_flight == 3
    assert client.stats.requests == 20


@pytest.mark.anyio
async def test_aclose_closes_the_pool() -> None:
    client = make_client(lambda request: ok("products", []))
    async with client:
        await client.products()
    assert client._http.is_closed


def test_repr_shows_the_base_url() -> None:
    client = make_client(lambda request: ok("products", []))
    assert repr(client) == f"<TestIOClient {BASE}/>"


@pytest.mark.anyio
async def test_the_token_is_never_in_errors_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def respond(status: int, **kwargs: Any) -> Handler:
        return lambda request: httpx.Response(status, **kwargs)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    cases: list[tuple[Handler, type[Exception]]] = [
        (respond(401), AuthenticationError),
        (respond(403), PermissionDenied),
        (respond(404), NotFound),
        (respond(400), ApiError),
        (respond(429, headers={"Retry-After": "0"}), RateLimited),
        (respond(503), ServiceError),
        (respond(200, html="<html></html>"), ServiceError),
        (drop, ServiceError),
    ]
    errors: list[Exception] = []
    for handler, expected in cases:
        async with make_client(handler, max_rate_limit_waits=1) as client:
            assert TOKEN not in repr(client)
            with pytest.raises(expected) as caught:
                await client.product(1)
            errors.append(caught.value)
    for bad_token in [f"{TOKEN} x", f"{TOKEN}\n\x07"]:
        with pytest.raises(ConfigError) as config_error:
            TestIOClient(BASE, bad_token)
        errors.append(config_error.value)

    assert len(errors) == len(cases) + 2
    for exc in errors:
        assert TOKEN not in str(exc)
        assert TOKEN not in repr(exc)
        assert TOKEN not in repr(exc.__cause__)
    assert caplog.records  # httpx and the retries did log
    assert TOKEN not in caplog.text


def test_priority_slots_hand_a_freed_slot_to_the_most_urgent_waiter_and_survive_cancels() -> None:
    from testio_toolkit.client import PrioritySlots

    async def scenario() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []
        gate = asyncio.Event()

        async def hold(name: str, priority: int) -> None:
            async with slots.slot(priority):
                order.append(name)
                await gate.wait()

        first = asyncio.create_task(hold("first", 1))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(hold(n, p)) for n, p in (("bugs", 1), ("gone", 0))]
        waiters.append(asyncio.create_task(hold("page", 0)))
        await asyncio.sleep(0)
        waiters[1].cancel()  # a cancelled waiter neither takes nor loses a slot
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *waiters, return_exceptions=True)
        async with slots.slot(1):  # the one slot is free again
            order.append("after")
        return order

    assert asyncio.run(scenario()) == ["first", "page", "bugs", "after"]


def test_priority_slots_follow_a_changing_limit() -> None:
    from testio_toolkit.client import PrioritySlots

    async def scenario() -> list[int]:
        slots = PrioritySlots(1)
        gate = asyncio.Event()
        holding = 0
        seen: list[int] = []

        async def hold() -> None:
            nonlocal holding
            async with slots.slot(0):
                holding += 1
                seen.append(holding)
                await gate.wait()
                holding -= 1

        tasks = [asyncio.create_task(hold()) for _ in range(5)]
        await asyncio.sleep(0)
        assert holding == 1
        slots.limit = 3  # a larger limit lets two waiters in at once
        await asyncio.sleep(0)
        assert holding == 3
        slots.limit = 2  # a smaller one interrupts nobody
        await asyncio.sleep(0)
        assert holding == 3
        gate.set()
        await asyncio.gather(*tasks)
        return seen

    # Once holders leave, at most two hold at once again: the later entries see <= 2.
    seen = asyncio.run(scenario())
    assert seen[:3] == [1, 2, 3]
    assert max(seen[3:]) <= 2


def _counting_handler(
    answer: Callable[[int], httpx.Response], wait: float = 0.002
) -> tuple[Handler, dict[str, int]]:
    """A handler answering ``answer(n)`` to the n-th request (1-based) after ``wait`` real
    seconds (0: one turn of the loop), counting the most requests it held at once."""
    seen = {"requests": 0, "in_flight": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        seen["requests"] += 1
        number = seen["requests"]
        seen["in_flight"] += 1
        seen["peak"] = max(seen["peak"], seen["in_flight"])
        await asyncio.sleep(wait)
        seen["in_flight"] -= 1
        return answer(number)

    return handler, seen


@pytest.mark.anyio
async def test_the_adaptive_limit_grows_past_the_old_fixed_eight_when_all_goes_well() -> None:
    handler, seen = _counting_handler(lambda n: ok("product", {}))
    async with make_client(handler) as client:
        assert client.limiter.limit == 8
        for _ in range(3):  # waves of 60 requests: demand far above the limit
            await asyncio.gather(*(client.product(i) for i in range(60)))
    figures = client.limiter.figures()
    assert (figures.start, figures.decreases) == (8, 0)
    assert figures.peak > 8
    assert seen["peak"] > 8  # the transport saw more than eight at once
    assert seen["peak"] <= figures.peak


@pytest.mark.anyio
async def test_a_pinned_concurrency_never_moves() -> None:
    handler, seen = _counting_handler(
        lambda n: httpx.Response(503) if n % 7 == 0 else ok("product", {})
    )
    async with make_client(handler, concurrency=5) as client:
        await asyncio.gather(*(client.product(i) for i in range(80)))
    assert seen["peak"] == 5
    assert client.limiter.figures().short().startswith("limit 5 (pinned")


@pytest.mark.anyio
async def test_a_burst_of_429s_within_one_round_trip_cuts_the_limit_once() -> None:
    fake = FakeTime()
    # The first 20 requests (one wave, all in flight together) answer 429; then all is well.
    handler, seen = _counting_handler(
        lambda n: (
            httpx.Response(429, headers={"Retry-After": "1"}) if n <= 20 else ok("product", {})
        )
    )
    async with make_client(handler, fake.clock(), concurrency_bounds=(2, 64)) as client:
        client.resume_limit(20)
        await asyncio.gather(*(client.product(i) for i in range(20)))
    figures = client.limiter.figures()
    assert figures.rate_limited == 20
    assert figures.decreases == 1
    assert figures.paused_seconds == 1.0  # twenty 429s at once: one shared pause of 1 s
    assert seen["requests"] == 40  # each re-sent once after the pause


@pytest.mark.anyio
async def test_a_500_leaves_the_limit_alone_and_503s_cut_it() -> None:
    handler, _ = _counting_handler(lambda n: httpx.Response(500))
    async with make_client(handler, max_attempts=1) as client:
        with pytest.raises(ServiceError):
            await client.product(1)
    assert client.limiter.figures().decreases == 0

    handler, _ = _counting_handler(lambda n: httpx.Response(503))
    async with make_client(handler, max_attempts=3) as client:
        with pytest.raises(ServiceError):
            await client.product(1)
    # One request at a time: each retry is sent after the previous cut, a new event.
    assert client.limiter.figures().decreases == 3
    assert client.limiter.limit == 2  # 8 -> 5 -> 3 -> 2


@pytest.mark.anyio
async def test_a_timeout_cuts_the_limit_but_an_unreachable_host_does_not() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with make_client(timeout, max_attempts=1) as client:
        with pytest.raises(ServiceError):
            await client.product(1)
    assert client.limiter.figures().decreases == 1

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with make_client(refused, max_attempts=1) as client:
        with pytest.raises(ServiceError):
            await client.product(1)
    assert client.limiter.figures().decreases == 0


def test_client_options_check_the_concurrency_settings() -> None:
    with pytest.raises(ConfigError, match="concurrency_bounds"):
        ClientOptions(concurrency_bounds=(4, 2))
    with pytest.raises(ConfigError, match="concurrency"):
        ClientOptions(concurrency=0)
    assert ClientOptions().concurrency is None  # adaptive by default
