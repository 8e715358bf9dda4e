"""The sandbox's HTTP face: routing, validation, faults, and the threaded server.

Standard library only (``http.server``). Every connection gets a daemon thread and is
kept alive (HTTP/1.1 with Content-Length), so a client's pool reuses connections and
requests that sleep (latency, hangs) never hold up others. Requests are answered in this
order, outermost first, as a gateway in front of an API would: the load model's refusals
(``load.py``: 429 over the rate, 503 over the requests in flight), planned faults (latency,
dropped connection, hang, 503 after N, 429, 5xx, garbage), then the token, the route and
its parameters, and last the data faults (the list moving before an ``exploratory_tests``
request is answered, poisoned tests, 524 on large ``bugs`` requests). Every response's
``Date`` header tells the sandbox clock (``World.now``), not the wall clock.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .faults import FaultPlanner
from .replies import Reply, api_error, gateway_page, json_reply
from .state import Broken, SectionRequired, Unknown, World

__all__ = ["PREFIX", "SandboxServer", "Stats"]

PREFIX = "/customer/v2/"

_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"products", "products"),
        (r"products/(\d+)", "product"),
        (r"products/(\d+)/exploratory_tests", "exploratory_tests"),
        (r"exploratory_tests/(\d+)", "exploratory_test"),
        (r"bugs", "bugs"),
        (r"products/(\d+)/features", "features"),
        (r"products/(\d+)/sections/(\d+)/features", "features"),
    )
)
_POSITIVE = re.compile(r"[1-9][0-9]{0,8}")
_DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class _Route:
    kind: str
    ids: tuple[int, ...]


class _BadRequest(Exception):
    """A query parameter is missing or malformed (400)."""


def _route(path: str) -> _Route | None:
    if not path.startswith(PREFIX):
        return None
    relative = path[len(PREFIX) :].removesuffix("/")
    for pattern, kind in _ROUTES:
        match = pattern.fullmatch(relative)
        if match:
            return _Route(kind, tuple(int(g) for g in match.groups()))
    return None


class Stats:
    """Requests served per endpoint kind, how many were handled at once, and the answers:
    per status (``statuses``; ``None`` for a dropped connection) and per second since the
    last reset (``per_second``), which the load tests read."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self.counters: Counter[str] = Counter()
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.statuses: Counter[int | None] = Counter()
        self._started = monotonic()
        self._seconds: dict[int, Counter[str]] = {}

    def begin(self, kind: str | None) -> int:
        """Count a request arriving; returns the requests in flight, itself included."""
        with self._lock:
            self.total += 1
            if kind is not None:
                self.counters[kind] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            second = self._seconds.setdefault(self._second(), Counter())
            second["requests"] += 1
            second["peak_in_flight"] = max(second["peak_in_flight"], self.in_flight)
            return self.in_flight

    def end(self, status: int | None = None) -> None:
        """Count a request answered with ``status`` (None: no answer was sent)."""
        with self._lock:
            self.in_flight -= 1
            self.statuses[status] += 1
            second = self._seconds.setdefault(self._second(), Counter())
            if status is None:
                second["dropped"] += 1
            elif 200 <= status < 300:
                second["ok"] += 1
            else:
                second[str(status)] += 1

    def _second(self) -> int:
        return int(self._monotonic() - self._started)

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def reset(self) -> None:
        with self._lock:
            self.counters = Counter()
            self.total = 0
            self.max_in_flight = self.in_flight
            self.connections = 0
            self.statuses = Counter()
            self._started = self._monotonic()
            self._seconds = {}

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counters)

    def status_snapshot(self) -> Counter[int | None]:
        with self._lock:
            return Counter(self.statuses)

    def series(self) -> list[dict[str, int]]:
        """One row per whole second since the last reset, up to now: requests arriving,
        answers (``ok`` for 2xx, ``"429"``, ``"503"``, ... by status, ``dropped``) and the
        most requests in flight, e.g. ``{"second": 3, "requests": 21, "ok": 20, "429": 1,
        "peak_in_flight": 12}``."""
        with self._lock:
            last = self._second()
            return [{"second": n, **dict(self._seconds.get(n, Counter()))} for n in range(last + 1)]


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    value = values[-1].strip()
    if not _POSITIVE.fullmatch(value):
        raise _BadRequest(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# Without `page`, the service answers only its last (newest) 150 tests, whatever
# `per_page` says (the official client warns about it).
UNPAGED_TESTS = 150


def _paging(query: dict[str, list[str]], *, ignore_paging: bool) -> tuple[int, int]:
    """(page, per_page) of an ``exploratory_tests`` request as the service serves it: the
    newest 150 without ``page``; page 1 for every page on a host that ignores paging."""
    per_page = _int_param(query, "per_page", 25)
    if "page" not in query:
        return 1, UNPAGED_TESTS
    page = _int_param(query, "page", 1)
    return (1 if ignore_paging else page), per_page


def _test_ids(query: dict[str, list[str]]) -> list[int]:
    raw = ",".join(query.get("filter_test_cycle_ids", []))
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise _BadRequest("filter_test_cycle_ids is required")
    if not all(_DIGITS.fullmatch(p) for p in parts):
        raise _BadRequest("filter_test_cycle_ids must be comma-separated integers")
    return [int(p) for p in parts]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testio-sandbox"
    sys_version = ""
    # Headers and body go out in two writes: without this, Nagle's algorithm and delayed
    # ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: SandboxServer

    def setup(self) -> None:
        super().setup()
        self.server.stats.connected()

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header: the sandbox clock, as an IMF-fixdate."""
        return formatdate(self.server.world.now() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and notebooks do not want an access log on stderr."""

    def do_GET(self) -> None:
        self.server.serve(self)

    def _refuse(self) -> None:
        self.close_connection = True  # an unread request body may follow
        self.server.serve(self, allowed=False)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse


class SandboxServer(ThreadingHTTPServer):
    """A threaded HTTP server that answers like the TestIO Customer API."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for a request that hangs on purpose
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a client that opens more
    # connections at once (a pool of 8), which then wait out a 1 s TCP retransmit.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        world: World,
        planner: FaultPlanner,
        token: str,
        stats: Stats,
    ) -> None:
        self.world = world
        self.planner = planner
        self.token = token
        self.stats = stats
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    # -- connection bookkeeping, so that stop() can close idle keep-alive connections

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        with self._open_lock:
            self._open.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Wake sleeping handlers and close every open connection."""
        self.stopping.set()
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, dropped connection) is normal here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    # -- answering

    def serve(self, handler: _Handler, allowed: bool = True) -> None:
        """Answer one request: faults first, then the API."""
        split = urlsplit(handler.path)
        route = _route(split.path) if allowed else None
        in_flight = self.stats.begin(route.kind if route else None)
        counted = False
        try:
            plan = self.planner.plan(in_flight)
            if plan.delay:
                self.stopping.wait(plan.delay)
            if plan.hang:
                self.stopping.wait(plan.hang)
            if plan.drop or self.stopping.is_set():
                handler.close_connection = True  # nothing written: the client sees EOF
                return
            if plan.reply is not None:
                reply = plan.reply
            elif not allowed:
                reply = api_error(405, "Only GET is supported", (("Allow", "GET"),))
            else:
                try:
                    reply = self._answer(route, split.query, handler)
                except Exception:
                    # A sandbox bug must still answer, like the real service's 500 would.
                    traceback.print_exc()
                    reply = api_error(500, "Internal Server Error (sandbox bug)")
            # Counted as answered before the bytes go out: a client that reads the counts
            # right after its answer finds that answer in them.
            counted = True
            self.stats.end(reply.status)
            self._send(handler, reply)
        finally:
            if not counted:
                self.stats.end(None)  # dropped, or the server stopped: no answer

    def _answer(self, route: _Route | None, query_string: str, handler: _Handler) -> Reply:
        faults = self.planner.faults
        if faults.unauthorized or handler.headers.get("Authorization") != f"Token {self.token}":
            return api_error(
                401, "Invalid or missing API token", (("WWW-Authenticate", 'Token realm="API"'),)
            )
        if route is None:
            return api_error(404, "Not found")
        query = parse_qs(query_string, keep_blank_values=True)
        world = self.world
        try:
            if route.kind == "products":
                return json_reply(world.products_json())
            if route.kind == "product":
                return json_reply(world.product_json(route.ids[0]))
            if route.kind == "exploratory_tests":
                page, per_page = _paging(query, ignore_paging=faults.ignore_paging)
                poisoned = set(faults.poisoned_test_ids)
                move = self.planner.list_move()
                body = world.tests_page_json(route.ids[0], page, per_page, poisoned, move)
                return json_reply(body)
            if route.kind == "exploratory_test":
                poisoned = set(faults.poisoned_test_ids)
                return json_reply(world.test_json(route.ids[0], poisoned))
            if route.kind == "bugs":
                ids = _test_ids(query)
                limit = faults.bugs_524_over
                if limit is not None and len(set(ids)) > limit:
                    return gateway_page(524)
                return json_reply(world.bugs_json(ids))
            section = route.ids[1] if len(route.ids) > 1 else None
            return json_reply(world.features_json(route.ids[0], section))
        except _BadRequest as exc:
            return api_error(400, str(exc))
        except Unknown as exc:
            return api_error(404, f"Not found: {exc}")
        except Broken:
            return api_error(500, "Internal Server Error")
        except SectionRequired as exc:
            return api_error(422, f"Section required: {exc}")

    def _send(self, handler: _Handler, reply: Reply) -> None:
        try:
            handler.send_response(reply.status, reply.reason or None)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(reply.body)))
            if handler.close_connection:
                handler.send_header("Connection", "close")
            for name, value in reply.headers:
                handler.send_header(name, value)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply.body)
        except OSError:
            handler.close_connection = True  # the client went away (gave up waiting)
