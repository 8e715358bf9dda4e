"""Talk to the TestIO Customer API: send GETs, unwrap envelopes, survive the service's failures.

Usage::

    >>> from testio_toolkit.client import TestIOClient
    >>> async with TestIOClient("https://api.test.io/customer/v2", token) as client:
    ...     products = await client.products()          # [{"id": 12, "name": ...}, ...]
    ...     page = await client.tests_page(12, page=1)  # up to 25 exploratory tests, newest first
    ...     bugs = await client.bugs([t["id"] for t in page])
    >>> client.stats.requests, client.stats.by_endpoint["bugs"]
    (4, 2)

The client only sends and receives. Every decision that needs no I/O (which status is worth
another attempt, how long a ``Retry-After`` asks for, how the body is unwrapped, how test ids
are batched) is a plain function below, tested without an event loop. Failures end as the
toolkit's own errors (``testio_toolkit.errors``), naming the request that failed and never
the token:

- 401 -> ``AuthenticationError``, 403 -> ``PermissionDenied``, 404 -> ``NotFound``,
  other 4xx -> ``ApiError`` (none of them retried);
- 429 -> every request of this client pauses for ``Retry-After``, then resends; after
  ``max_rate_limit_waits`` of them for one request -> ``RateLimited``;
- how many requests are in flight is the limiter's (``testio_toolkit.limiter``): every
  answer tells it whether the service is coping (2xx) or overloaded (429, 503, 504, 524, no
  answer), and the slots follow its limit;
- 5xx (524 included), 408, timeouts, dropped connections and bodies that are not the expected
  JSON envelope -> retried with exponential backoff, then ``ServiceError``. A plain 500 gets
  only ``max_attempts_500`` attempts: it usually means one broken record, which the caller
  salvages by re-reading smaller pages rather than by asking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import httpx
import orjson

from .config import DEFAULT_BASE_URL
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    NotFound,
    PagingIgnored,
    PermissionDenied,
    RateLimited,
    ServiceError,
    first_error,
)
from .limiter import DEFAULT_BOUNDS, Limiter, Ticket, is_overload
from .redact import redact

__all__ = [
    "DEFAULT_BASE_URL",
    "BugBatchSizer",
    "ClientOptions",
    "Clock",
    "RequestStats",
    "TestIOClient",
]


log = logging.getLogger(__name__)

T = TypeVar("T")
Shape = Literal["object", "list"]
Params = Mapping[str, str | int]


@dataclass(frozen=True)
class ClientOptions:
    """How hard a client pushes the service and how patiently it retries.

    ``ClientOptions(concurrency=4, backoff_base=0.001)`` keeps defaults for the rest;
    ``ClientOptions()`` adapts the requests in flight (``limiter.py``), ``concurrency=4``
    pins them at 4.
    """

    # Requests in flight for this client (one run): None adapts it (limiter.py, AIMD within
    # concurrency_bounds, from the limit the mirror learned last run); a number pins it.
    concurrency: int | None = None
    concurrency_bounds: tuple[int, int] = DEFAULT_BOUNDS
    timeout: float = 30.0  # seconds, per request (connect/read/write/pool)
    max_attempts: int = 5  # attempts for 502/503/504, timeouts, dropped connections, garbage
    max_attempts_500: int = 2  # attempts for a plain 500 (one broken record: caller salvages)
    # attempts when no connection can be made and the host never answered this client
    # (a wrong host or port, no network): fail in about a second, not after 5 backoffs
    max_attempts_unreachable: int = 3
    backoff_base: float = 0.5  # exponential backoff with jitter: base * 2**n ...
    backoff_max: float = 20.0  # ... capped here
    # 429s tolerated per request before RateLimited: a few minutes at ``Retry-After: 1``, so
    # a minute-long storm of 429s slows a run down without failing it
    max_rate_limit_waits: int = 200
    max_retry_after: float = 300.0  # never wait longer than this on one Retry-After
    bug_batch_size: int = 15  # at most this many test ids per bugs request
    per_page: int = 25

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError("ClientOptions.concurrency must be at least 1 (or None: adaptive)")
        low, high = self.concurrency_bounds
        if not 1 <= low <= high:
            raise ConfigError(
                "ClientOptions.concurrency_bounds must be (low, high) with 1 <= low <= high"
            )
        at_least_one = (
            "max_attempts",
            "max_attempts_500",
            "max_attempts_unreachable",
            "bug_batch_size",
        )
        for name in (*at_least_one, "per_page"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ClientOptions.{name} must be at least 1")
        if self.max_rate_limit_waits < 0:
            raise ConfigError("ClientOptions.max_rate_limit_waits must not be negative")
        for name in ("timeout", "backoff_base", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"ClientOptions.{name} must be a finite number >= 0")


@dataclass
class RequestStats:
    """What one client sent. ``by_endpoint`` counts by kind, which is the envelope name:
    ``products``, ``product``, ``exploratory_tests``, ``exploratory_test``, ``bugs``,
    ``features``. ``retries`` counts re-sends after failures; 429 re-sends are counted in
    ``rate_limit_waits`` instead."""

    requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limit_waits: int = 0
    max_in_flight: int = 0
    # The service's clock (its ``Date`` header) at the first answer: when the run began, as
    # the service counts time. The engine derives the next incremental sync's stop from it.
    first_server_date: datetime | None = None


def _wall_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clock:
    """Where a client's time comes from: pauses and backoffs wait on ``sleep`` until
    ``monotonic`` says they are over; ``wall`` stands in for a 429 without a ``Date``;
    ``random`` is the backoff's jitter (0..1).

    ``TestIOClient(url, token, clock=Clock(monotonic=fake.now, sleep=fake.sleep))`` makes
    every wait measurable in a test without waiting.
    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    wall: Callable[[], datetime] = _wall_now
    random: Callable[[], float] = random.random


# ---------------------------------------------------------------------------------------------
# Decisions without I/O
# ---------------------------------------------------------------------------------------------


class Outcome(Enum):
    """What to do with a response, judged by its status alone."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"
    RETRY = "retry"
    REFUSED = "refused"


def classify_status(status_code: int) -> Outcome:
    """``classify_status(503)`` -> ``Outcome.RETRY``; 401/403/404/400 -> ``REFUSED``."""
    if 200 <= status_code < 300:
        return Outcome.OK
    if status_code == 429:
        return Outcome.RATE_LIMITED
    # Every 5xx, Cloudflare's 52x included, may clear on its own; so may 408.
    if status_code >= 500 or status_code == 408:
        return Outcome.RETRY
    return Outcome.REFUSED


def attempts_allowed(
    status_code: int | None, options: ClientOptions, *, salvageable: bool = False
) -> int:
    """How many attempts a request gets when its latest failure had this status
    (``None``: no response at all). ``salvageable`` requests (list pages) can be re-read
    in smaller windows by the caller."""
    # On a list page, a persistent 500 is one broken record, not an outage: fail fast so
    # the caller can re-read the window in smaller pages instead of waiting through five
    # backoffs. Elsewhere nobody can salvage it, so a 500 gets the full budget.
    if status_code == 500 and salvageable:
        return options.max_attempts_500
    return options.max_attempts


def backoff_delay(retry_number: int, options: ClientOptions, jitter: float) -> float:
    """Seconds before retry ``retry_number`` (0 for the first): ``base * 2**n`` capped at
    ``backoff_max``, of which ``jitter`` (0..1) picks between half and all, so requests
    that failed together do not come back together."""
    ceiling = min(options.backoff_max, options.backoff_base * 2.0 ** min(retry_number, 64))
    return ceiling * (0.5 + 0.5 * jitter)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse ``Retry-After``: ``"120"`` or an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``,
    measured from ``now``). ``None`` when missing or unreadable; a date in the past is 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        return None if when is None else max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _http_date(text: str) -> datetime | None:
    """An HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``) as an aware datetime; None if not one."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" parses naive; HTTP dates are GMT anyway.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def rate_limit_pause(
    retry_after: str | None,
    date: str | None,
    *,
    wall_now: datetime,
    waits_so_far: int,
    options: ClientOptions,
    jitter: float,
) -> float:
    """Seconds to pause after a 429, from its ``Retry-After`` and ``Date`` headers.

    An HTTP-date ``Retry-After`` is measured from the response's own ``Date`` when it has
    one, so a laptop whose clock is off does not stretch or cut the pause. Without a usable
    ``Retry-After``, back off exponentially. Never more than ``max_retry_after``.
    """
    now = (_http_date(date) if date else None) or wall_now
    seconds = retry_after_seconds(retry_after, now)
    if seconds is None:
        seconds = backoff_delay(waits_so_far, options, jitter)
    return min(seconds, options.max_retry_after)


class GarbageBody(ValueError):
    """A 2xx body that is not the JSON envelope asked for (says how, in the service's voice)."""


def unwrap_envelope(content: bytes, envelope: str, shape: Shape | None = None) -> Any:
    """``unwrap_envelope(b'{"products": []}', "products")`` -> ``[]``.

    ``shape`` also checks the payload: ``"object"`` a JSON object, ``"list"`` a list of
    objects. Raises ``GarbageBody`` otherwise (HTML from a gateway, an empty body, ...).
    """
    try:
        body = orjson.loads(content)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        raise GarbageBody("answered something that is not JSON") from None
    if not isinstance(body, dict) or envelope not in body:
        raise GarbageBody(f"answered without the {envelope!r} envelope")
    payload = body[envelope]
    if shape == "object" and not isinstance(payload, dict):
        raise GarbageBody(f"answered a {envelope!r} that is not a JSON object")
    if shape == "list" and not (
        isinstance(payload, list) and all(isinstance(item, dict) for item in payload)
    ):
        raise GarbageBody(f"answered a {envelope!r} that is not a list of JSON objects")
    return redact(payload)


def describe_request(path: str, params: Params | None = None) -> str:
    """The request as error messages name it: ``GET products/12/exploratory_tests page 3``."""
    text = f"GET {path}"
    if params:
        if "page" in params:
            text += f" page {params['page']}"
        if "filter_test_cycle_ids" in params:
            text += f" for tests {params['filter_test_cycle_ids']}"
    return text


def describe_transport_error(exc: httpx.TransportError) -> str:
    """What went wrong without a response; by class name only, as httpx messages vary."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name})"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({name})"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"the connection was dropped ({name})"
    return f"the request failed ({name})"


# Endpoints that exist in every account: a 404 there means the base URL is wrong.
ALWAYS_THERE = frozenset({"products"})
TOKEN_HINT = "check TESTIO_CUSTOMER_API_TOKEN (in the environment or a .env file)"
BASE_URL_HINT = "check the base URL (TESTIO_CUSTOMER_API_BASE_URL)"


def refusal_error(
    status_code: int,
    what: str,
    endpoint: str,
    *,
    base_url: str = "",
    token_hint: str = TOKEN_HINT,
    base_url_hint: str = BASE_URL_HINT,
) -> ApiError:
    """The error for a status not worth retrying, saying what to check."""
    if status_code == 401:
        cls: type[ApiError] = AuthenticationError
        why = "the service refused the API token (401)" + (f"; {token_hint}" if token_hint else "")
    elif status_code == 403:
        cls, why = PermissionDenied, "the API token has no access to this object (403)"
    elif status_code == 404 and endpoint in ALWAYS_THERE:
        cls = NotFound
        why = f"nothing found at {base_url.rstrip('/')}/{endpoint} (404); {base_url_hint}"
    elif status_code == 404:
        cls, why = NotFound, "no such object (404)"
    else:
        cls, why = ApiError, f"HTTP {status_code}"
    return cls(f"{what} failed: {why}", endpoint=endpoint, status_code=status_code)


def repeats_first_page(first: Sequence[int], ids: Sequence[int]) -> bool:
    """A later page that holds the first tests of page 1, in page 1's order: the host
    ignores ``page`` (a moving list shifts items by a few offsets, never by a page).

    >>> repeats_first_page([9, 8, 7], [9, 8]), repeats_first_page([9, 8, 7], [7, 6])
    (True, False)
    """
    return len(ids) >= 2 and list(ids) == list(first[: len(ids)])


def unique_ids(ids: Iterable[int]) -> list[int]:
    """Ids in first-seen order, each once."""
    return list(dict.fromkeys(ids))


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """``chunked([1, 2, 3], 2)`` -> ``[[1, 2], [3]]``."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def chunked_evenly(items: Sequence[T], size: int) -> list[list[T]]:
    """As few parts of at most ``size`` as ``chunked``, of nearly equal length:
    ``chunked_evenly(list(range(7)), 4)`` -> ``[[0, 1, 2, 3], [4, 5, 6]]``, and
    ``chunked_evenly(list(range(9)), 4)`` -> ``[[0, 1, 2], [3, 4, 5], [6, 7, 8]]``."""
    count = max(1, math.ceil(len(items) / size))
    base, extra = divmod(len(items), count)
    parts, start = [], 0
    for index in range(count):
        end = start + base + (index < extra)
        parts.append(list(items[start:end]))
        start = end
    return parts


def dedupe_by_id(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """First object per ``id``, in order; objects without an id are kept as they come."""
    seen: set[Any] = set()
    unique = []
    for obj in objects:
        key = obj.get("id")
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        unique.append(obj)
    return unique


class BugBatchSizer:
    """How many test ids one ``bugs`` request carries, learned from 524s during one run.

    >>> sizer = BugBatchSizer(15)
    >>> sizer.size                    # 15: nothing learned yet
    >>> sizer.too_heavy(15); sizer.size
    7
    >>> sizer.worked(7); sizer.size   # binary search between what worked and what did not
    11

    ``size`` is the batch size to use now: the ceiling until a batch was too heavy, then a
    binary search between the largest size that worked (``confirmed``) and the smallest
    that did not, which settles after a few probes. Once a batch was too heavy, sizes up
    to ``confirmed`` are safe to send concurrently and a larger one is a probe (the client
    sends one probe at a time); the first 524 of a run may strike every request in flight.
    After ``grow_after`` successes at the settled size, the limit is raised again (the
    service may have recovered) and the wait before the next rise doubles, so a service
    that stays slow costs a handful of probes per run.
    """

    def __init__(self, ceiling: int, grow_after: int = 50) -> None:
        self.ceiling = ceiling
        self.grow_after = grow_after
        self.confirmed = 0  # the largest size that answered (below too_big)
        self.too_big = ceiling + 1  # the smallest size that was too heavy
        self._streak = 0

    def is_probe(self, size: int) -> bool:
        """True when a batch of ``size`` may be too heavy: once a 524 was seen, sizes above
        ``confirmed``. Before any 524, nothing is a probe (no cost when all is well)."""
        return self.too_big <= self.ceiling and size > self.confirmed

    @property
    def size(self) -> int:
        if self.too_big > self.ceiling:
            return self.ceiling
        if self.too_big - self.confirmed > 1:
            return max(1, (self.confirmed + self.too_big) // 2)
        return self.confirmed

    def worked(self, size: int) -> None:
        """A request for ``size`` test ids answered."""
        if size > self.confirmed:
            self.confirmed = min(size, self.ceiling)
            self.too_big = max(self.too_big, self.confirmed + 1)
        if size < self.confirmed or self.too_big > self.ceiling:
            return
        self._streak += 1
        if self.too_big - self.confirmed == 1 and self._streak >= self.grow_after:
            # Settled for a while: try larger batches again, less eagerly each time.
            self.too_big = min(self.ceiling + 1, self.too_big * 2)
            self._streak = 0
            self.grow_after *= 2

    def too_heavy(self, size: int) -> None:
        """A request for ``size`` (> 1) test ids answered 524 or timed out."""
        self._streak = 0
        self.too_big = min(self.too_big, max(size, 2))
        if self.confirmed >= self.too_big:
            self.confirmed = 0  # what worked before no longer does: probe again


def normalise_base_url(base_url: str) -> str:
    """``"https://api.test.io/customer/v2"`` -> ``"https://api.test.io/customer/v2/"``.

    The trailing slash keeps the path prefix when relative endpoints are joined to it.
    """
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL:
        raise ConfigError(f"the base URL is not a URL (expected e.g. {DEFAULT_BASE_URL})") from None
    # The URL itself is not quoted in these messages: someone may have pasted a secret into it.
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"the base URL must be an http(s) URL such as {DEFAULT_BASE_URL}")
    if url.userinfo:
        raise ConfigError("the base URL must not carry a user name or password; pass the token")
    if url.query or url.fragment:
        raise ConfigError("the base URL must not carry a query or fragment")
    if not url.path.endswith("/"):
        url = url.copy_with(path=url.path + "/")
    return str(url)


def check_token(token: str) -> str:
    """The token as it goes into the header, or ``ConfigError`` (which never quotes it)."""
    token = token.strip()  # a trailing newline from a .env file or a copy-paste
    if not token:
        raise ConfigError("no API token given")
    # Refuse here what the HTTP stack would refuse later with the header value in its message.
    if not token.isascii() or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigError("the API token contains spaces, control or non-ASCII characters")
    return token


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class _Transient(Exception):
    """One failed attempt worth another (internal: it always ends as ServiceError)."""

    def __init__(
        self,
        reason: str,
        status_code: int | None,
        *,
        overloaded: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        # No connection could be made, and this client never had an answer: probably a
        # wrong host or port, or no network, rather than a blip in a running sync.
        self.unreachable = unreachable
        # The origin took too long for this request: 524 from the gateway, or our own read
        # timeout, which fires first (30 s) when the gateway would wait 100 s to send its 524.
        self.overloaded = overloaded


class _Overloaded(ServiceError):
    """A bugs request for several tests was too heavy; never escapes ``bugs()``."""


class _RateLimitedOnce(Exception):
    """One 429 (internal): the request pauses, and is sent again without using up an attempt."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__("HTTP 429")
        self.retry_after = response.headers.get("Retry-After")
        self.date = response.headers.get("Date")


async def _gather(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself
    (callers catch the toolkit's errors, not an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as failed:
        raise first_error(failed) from None
    return [task.result() for task in tasks]


class PrioritySlots:
    """At most ``limit`` holders at once; a freed slot goes to the waiter with the lowest
    priority number, first come first served within one priority. ``limit`` may change at
    any time: a larger one lets waiters in at once, a smaller one takes effect as holders
    leave (nobody is interrupted).

    >>> async with slots.slot(0): ...     # served before waiters of priority 1
    >>> slots.limit = 12                  # the limiter moved
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._count = itertools.count()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = max(1, value)
        self._hand_out()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        if self._held < self._limit and not self._waiting:
            self._held += 1
        else:
            ticket = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._count), ticket))
            try:
                await ticket  # a releaser (or a larger limit) handed us a slot
            except asyncio.CancelledError:
                if ticket.done() and not ticket.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                else:
                    self._waiting = [w for w in self._waiting if w[2] is not ticket]
                    heapq.heapify(self._waiting)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._held -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        while self._waiting and self._held < self._limit:
            _, _, ticket = heapq.heappop(self._waiting)
            if not ticket.done():
                ticket.set_result(None)
                self._held += 1


class TestIOClient:
    """An async client for one run against one TestIO account.

    >>> async with TestIOClient(DEFAULT_BASE_URL, token, ClientOptions(concurrency=4)) as c:
    ...     test = await c.test(4711)       # {"id": 4711, "title": ..., "product": {...}}

    One connection pool; requests in flight bounded by ``limiter`` (adaptive, or pinned by
    ``options.concurrency``), and a 429 on any request pauses all of them. ``transport``
    replaces the network (``httpx.MockTransport``), ``clock`` the time it waits on (``Clock``).
    """

    __test__ = False  # the name starts with "Test": keep pytest from collecting it

    def __init__(
        self,
        base_url: str,
        token: str,
        options: ClientOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: Callable[[str], None] | None = None,
        token_hint: str = TOKEN_HINT,
        base_url_hint: str = BASE_URL_HINT,
        clock: Clock | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self.clock = clock or Clock()
        # What messages tell a user to check (Settings knows where each value came from).
        self._token_hint = token_hint
        self._base_url_hint = base_url_hint
        # Called with the endpoint kind for every request sent (the engine counts per product).
        self._on_request = on_request
        self.base_url = normalise_base_url(base_url)
        # The base URL as messages show it: never with the token, should it be pasted in.
        self._shown_url = self.base_url.replace(token.strip(), "***") if token.strip() else ""
        self._answered = False  # any response at all: the host is there
        self.stats = RequestStats()
        pinned = self.options.concurrency
        self.limiter = (
            Limiter.pinned(pinned)
            if pinned is not None
            else Limiter(bounds=self.options.concurrency_bounds)
        )
        limit = self.limiter.high  # connections for the most requests ever in flight
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Token {check_token(token)}",
                "Accept": "application/json",
                "User-Agent": "testio-toolkit",
            },
            timeout=httpx.Timeout(self.options.timeout),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            transport=transport,
        )
        self._slots = PrioritySlots(self.limiter.limit)
        self._bug_sizer = BugBatchSizer(self.options.bug_batch_size)
        self._bug_probe = asyncio.Lock()
        self._in_flight = 0
        # The ids of each product's last page 1, to notice a host that ignores `page`.
        self._first_pages: dict[int, list[int]] = {}
        self._paused_until = -math.inf  # monotonic instant; set by any 429, awaited by all

    def __repr__(self) -> str:
        return f"<TestIOClient {self.base_url}>"

    @property
    def concurrency_ceiling(self) -> int:
        """The most requests this client may ever have in flight (the pinned limit, or the
        adaptive limit's upper bound)."""
        return self.limiter.high

    def resume_limit(self, learned: int | None) -> None:
        """Start the adaptive limit where an earlier run against this account left it
        (``None``, or a pinned limit: nothing changes)."""
        if learned is not None and not self.limiter.is_pinned:
            self.limiter.resume(learned)
            self._slots.limit = self.limiter.limit

    async def __aenter__(self) -> TestIOClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    async def products(self) -> list[dict[str, Any]]:
        """Every product of the account: ``[{"id": 12, "name": "Shop", ...}, ...]``."""
        return await self._get_list("products", None, "products")

    async def product(self, product_id: int) -> dict[str, Any]:
        """One product, with ``sections`` and ``sections_with_default``."""
        return await self._get_object(f"products/{product_id}", None, "product")

    async def tests_page(
        self, product_id: int, page: int, per_page: int | None = None
    ) -> list[dict[str, Any]]:
        """Page ``page`` (1-based) of a product's exploratory tests, newest first.

        A page shorter than ``per_page`` is the last. A 500 that persists raises
        ``ServiceError(status_code=500)`` after ``max_attempts_500`` attempts.
        """
        # Always with `page`: without it the service answers only its last 150 tests.
        params = {"page": page, "per_page": per_page or self.options.per_page}
        path = f"products/{product_id}/exploratory_tests"
        items = await self._get_list(path, params, "exploratory_tests", salvageable=True)
        ids = [int(item["id"]) for item in items if isinstance(item, dict) and "id" in item]
        if page == 1:
            self._first_pages[product_id] = ids
        elif repeats_first_page(self._first_pages.get(product_id, []), ids):
            raise PagingIgnored(
                f"{describe_request(path, params)} on {self._shown_url} answered with the "
                f"tests of page 1: this host ignores paging, so the list cannot be read "
                f"whole (nothing was stored twice); {self._base_url_hint}: staging hosts "
                f"may ignore `page`, {DEFAULT_BASE_URL} does not",
                endpoint=path,
            )
        return items

    async def test(self, test_id: int) -> dict[str, Any]:
        """One exploratory test in detail, with ``product: {id, name}``."""
        return await self._get_object(f"exploratory_tests/{test_id}", None, "exploratory_test")

    async def features(
        self, product_id: int, section_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Features of a product, or of one section of a sectioned product."""
        if section_id is None:
            path = f"products/{product_id}/features"
        else:
            path = f"products/{product_id}/sections/{section_id}/features"
        return await self._get_list(path, None, "features")

    async def bugs(self, test_ids: Sequence[int]) -> list[dict[str, Any]]:
        """All bugs of these tests, each once: ``await client.bugs([4711, 4712])``.

        Asks for at most ``bug_batch_size`` tests per request, batches concurrently. A batch
        the service finds too heavy (524, or our read timeout) teaches the client a smaller
        batch size, which every later batch of this client uses from the start (see
        ``BugBatchSizer``): a 524 costs a few requests per run, not a few per batch.
        """
        ids = unique_ids(test_ids)
        if not ids:
            return []
        batches = await _gather(
            self._bugs_of(batch) for batch in chunked(ids, self.options.bug_batch_size)
        )
        return dedupe_by_id(bug for batch in batches for bug in batch)

    async def _bugs_of(self, ids: list[int]) -> list[dict[str, Any]]:
        sizer = self._bug_sizer
        found: list[dict[str, Any]] = []
        rest = ids
        while rest:
            size = sizer.size
            if not sizer.is_probe(min(size, len(rest))):
                # A size known to work (or nothing learned yet): all parts at once.
                parts = chunked_evenly(rest, size)
                if len(parts) > 1:
                    answers = await _gather(self._bugs_of(part) for part in parts)
                    return found + [bug for answer in answers for bug in answer]
                try:
                    return found + await self._ask_bugs(rest)
                except _Overloaded:
                    continue  # the sizer learned from it; split by the new size
            # A size not known to work: one probe at a time and one part at a time, so
            # that a 524 is paid once per size, not by every request in flight.
            async with self._bug_probe:
                part = rest[: sizer.size]
                if not sizer.is_probe(len(part)):
                    continue  # another probe taught us something meanwhile
                try:
                    found += await self._ask_bugs(part)
                except _Overloaded:
                    continue
                rest = rest[len(part) :]
        return found

    async def _ask_bugs(self, ids: list[int]) -> list[dict[str, Any]]:
        params = {"filter_test_cycle_ids": ",".join(str(i) for i in ids)}
        try:
            bugs = await self._get_list("bugs", params, "bugs", overload_fails_fast=len(ids) > 1)
        except _Overloaded:
            self._bug_sizer.too_heavy(len(ids))
            log.info(
                "GET bugs for %d tests was too heavy; asking for %d at a time",
                len(ids),
                self._bug_sizer.size,
            )
            raise
        self._bug_sizer.worked(len(ids))
        return bugs

    # -- the request machinery ---------------------------------------------------------------

    async def get(
        self, path: str, params: Mapping[str, str | int] | None = None, *, envelope: str
    ) -> Any:
        """GET a relative ``path`` and return what is inside ``envelope``.

        >>> await client.get("products/12", envelope="product")
        {"id": 12, "name": "Shop", ...}
        """
        return await self._get(path, params, envelope)

    async def _get_list(
        self,
        path: str,
        params: Params | None,
        envelope: str,
        *,
        overload_fails_fast: bool = False,
        salvageable: bool = False,
    ) -> list[dict[str, Any]]:
        payload = await self._get(
            path,
            params,
            envelope,
            "list",
            overload_fails_fast=overload_fails_fast,
            salvageable=salvageable,
        )
        return cast(list[dict[str, Any]], payload)

    async def _get_object(self, path: str, params: Params | None, envelope: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._get(path, params, envelope, "object"))

    async def _get(
        self,
        path: str,
        params: Params | None,
        envelope: str,
        shape: Shape | None = None,
        *,
        overload_fails_fast: bool = False,
        salvageable: bool = False,
    ) -> Any:
        path = path.lstrip("/")  # relative, so the base URL's path prefix is kept
        what = describe_request(path, params)
        # The one retry loop: a failure worth another attempt backs off and tries again
        # until its budget is spent; a 429 pauses every request of the client and resends,
        # without using up an attempt, but bounded on its own.
        attempts = rate_limit_waits = 0
        while True:
            try:
                return await self._attempt(path, params, envelope, shape, what)
            except _RateLimitedOnce as limited:
                rate_limit_waits += 1
                self._pause_for(limited, rate_limit_waits, what, path)
            except _Transient as failure:
                attempts += 1
                if overload_fails_fast and failure.overloaded:
                    raise _Overloaded(
                        f"{what} failed: {failure.reason}",
                        endpoint=path,
                        status_code=failure.status_code,
                    ) from failure.__cause__
                allowed = attempts_allowed(
                    failure.status_code, self.options, salvageable=salvageable
                )
                if failure.unreachable:
                    allowed = min(allowed, self.options.max_attempts_unreachable)
                if attempts >= allowed:
                    raise self._given_up(failure, attempts, what, path) from failure.__cause__
                delay = backoff_delay(attempts - 1, self.options, self.clock.random())
                self.stats.retries += 1
                log.info("%s: %s (attempt %d); retrying in %.2f s", what, failure, attempts, delay)
                await self.clock.sleep(delay)

    def _given_up(self, failure: _Transient, attempts: int, what: str, path: str) -> ServiceError:
        times = "attempt" if attempts == 1 else "attempts"
        connect = isinstance(failure.__cause__, httpx.ConnectError)
        hint = f"; {self._base_url_hint} and the network" if connect else ""
        return ServiceError(
            f"{what} failed: {failure.reason} after {attempts} {times}{hint}",
            endpoint=path,
            status_code=failure.status_code,
        )

    def _pause_for(self, limited: _RateLimitedOnce, waits: int, what: str, path: str) -> None:
        """Pause every request of this client after the ``waits``-th 429 of one request."""
        if waits > self.options.max_rate_limit_waits:
            raise RateLimited(
                f"{what} failed: still rate-limited (429) after "
                f"{self.options.max_rate_limit_waits} waits",
                endpoint=path,
                status_code=429,
            )
        pause = rate_limit_pause(
            limited.retry_after,
            limited.date,
            wall_now=self.clock.wall(),
            waits_so_far=waits - 1,
            options=self.options,
            jitter=self.clock.random(),
        )
        self.stats.rate_limit_waits += 1
        now = self.clock.monotonic()
        until = max(self._paused_until, now + pause)
        self.limiter.paused(until - max(self._paused_until, now))
        self._paused_until = until
        log.info("%s: rate-limited (429); pausing all requests for %.1f s", what, pause)

    async def _attempt(
        self, path: str, params: Params | None, envelope: str, shape: Shape | None, what: str
    ) -> Any:
        """Send once: the payload, or ``_Transient`` (worth another attempt),
        ``_RateLimitedOnce`` (a 429), or the toolkit's error for a refusal."""
        try:
            response = await self._send(path, params, kind=envelope)
        except httpx.TransportError as exc:
            reason = describe_transport_error(exc)
            if isinstance(exc, httpx.ConnectError):
                reason += f" to {self._shown_url}"
            overloaded = isinstance(exc, httpx.ReadTimeout)
            raise _Transient(
                reason,
                None,
                overloaded=overloaded,
                unreachable=isinstance(exc, httpx.ConnectError) and not self._answered,
            ) from exc
        except httpx.DecodingError as exc:  # e.g. a truncated gzip body
            raise _Transient("the service sent a body that cannot be decoded", None) from exc
        self._answered = True
        status = response.status_code
        outcome = classify_status(status)
        if outcome is Outcome.OK:
            if self.stats.first_server_date is None:
                self.stats.first_server_date = _http_date(response.headers.get("Date", ""))
            try:
                return unwrap_envelope(response.content, envelope, shape)
            except GarbageBody as exc:
                raise _Transient(f"the service {exc}", status) from None
        if outcome is Outcome.RETRY:
            raise _Transient(f"HTTP {status}", status, overloaded=status == 524)
        if outcome is Outcome.REFUSED:
            raise refusal_error(
                status,
                what,
                path,
                base_url=self._shown_url,
                token_hint=self._token_hint,
                base_url_hint=self._base_url_hint,
            )
        raise _RateLimitedOnce(response)

    async def _send(self, path: str, params: Params | None, *, kind: str) -> httpx.Response:
        """Send one GET once the rate-limit pause is over, holding a concurrency slot."""
        while True:
            await self._wait_out_pause()
            # List pages first: a product's list is read one window after another, so
            # each page that waits behind bug batches makes the whole run longer.
            async with self._slots.slot(0 if kind == "exploratory_tests" else 1):
                # A 429 may have arrived while we queued for the slot: wait again, without
                # holding the slot, rather than send a request that would be refused.
                if self.clock.monotonic() < self._paused_until:
                    continue
                self._in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                self.stats.requests += 1
                self.stats.by_endpoint[kind] += 1
                if self._on_request is not None:
                    self._on_request(kind)
                ticket = self.limiter.sent(self._in_flight)
                try:
                    response = await self._http.get(path, params=params)
                except httpx.TransportError as exc:
                    # No answer: overload, unless no connection could be made to a host
                    # that never answered (a wrong address says nothing about load).
                    if not isinstance(exc, httpx.ConnectError) or self._answered:
                        self._learn(ticket, None)
                    raise
                finally:
                    self._in_flight -= 1
                self._learn(ticket, response.status_code)
                return response

    def _learn(self, ticket: Ticket, status_code: int | None) -> None:
        """Tell the limiter what one answer said, and give the slots its new limit."""
        if status_code is not None and 200 <= status_code < 300:
            self.limiter.succeeded(ticket)
        elif is_overload(status_code) and self.limiter.overloaded(
            ticket, rate_limited=status_code == 429
        ):
            log.info(
                "the service is overloaded (%s); %d requests in flight at most now",
                status_code or "no answer",
                self.limiter.limit,
            )
        self._slots.limit = self.limiter.limit

    async def _wait_out_pause(self) -> None:
        # A loop, because another 429 may push the pause further while we sleep.
        while (remaining := self._paused_until - self.clock.monotonic()) > 0:
            await self.clock.sleep(remaining)
