"""The answers the sandbox sends besides data: API errors, gateway pages, garbage.

They copy the shapes a client meets in practice: the API's own errors are small JSON
objects without an envelope (``{"error": ..., "status": ...}``), while 502, 504 and 524
come from a gateway in front of it as HTML pages, and a broken edge can answer 200 with
a body that is not a JSON object at all.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Literal

__all__ = ["Reply", "api_error", "garbage", "gateway_page", "json_reply", "rate_limited"]

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
    524: "A Timeout Occurred",
}


@dataclass(frozen=True)
class Reply:
    """One complete HTTP answer."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def reason(self) -> str:
        """The reason phrase of the status line (http.server does not know 524)."""
        return _REASONS.get(self.status, "")


def json_reply(body: bytes) -> Reply:
    """A 200 answer with an encoded JSON envelope."""
    return Reply(200, body)


def api_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """An error the API itself reports, as a small JSON object without an envelope."""
    body = {"error": message, "status": status}
    return Reply(status, json.dumps(body).encode(), JSON, headers)


def gateway_page(status: int) -> Reply:
    """An HTML error page as a proxy or CDN in front of the API serves it."""
    reason = _REASONS.get(status, "Error")
    if status == 524:
        body = (
            "<!DOCTYPE html><html><head><title>api.test.io | 524: A timeout occurred"
            "</title></head><body><h1>A timeout occurred</h1><p>Error code 524</p>"
            "<p>The origin web server timed out responding to this request.</p></body></html>"
        )
    else:
        body = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
    return Reply(status, body.encode(), HTML)


def rate_limited(
    retry_after: float, form: Literal["seconds", "http-date"], now: float | None = None
) -> Reply:
    """A 429 with Retry-After in whole seconds or as an HTTP date, rounded up.

    The date is ``now`` (the service's clock, as its ``Date`` header shows; the wall clock
    by default) plus ``retry_after`` rounded up to the next whole second, so a client that
    waits until then waits at least ``retry_after``.
    """
    wait = max(0.0, retry_after)
    if form == "http-date":
        now = time.time() if now is None else now
        value = formatdate(math.ceil(now + wait), usegmt=True)
    else:
        value = str(math.ceil(wait))
    return api_error(429, "Rate limit exceeded", (("Retry-After", value),))


_GARBAGE: tuple[tuple[bytes, str], ...] = (
    (
        b"<!DOCTYPE html><html><head><title>Maintenance</title></head>"
        b"<body><h1>We&rsquo;ll be back soon</h1></body></html>",
        HTML,
    ),
    (b"[]", JSON),
    (b"", JSON),
    (b"null", JSON),
    (b'{"exploratory_tests": [{"id": 1', JSON),  # cut off mid-object
    (b'"OK"', JSON),
)


def garbage(rng: random.Random) -> Reply:
    """A 200 whose body is not a JSON object: an HTML page, a list, nothing, a fragment."""
    body, content_type = _GARBAGE[rng.randrange(len(_GARBAGE))]
    return Reply(200, body, content_type)
