"""From TestIO JSON objects to store rows: pure functions, no I/O.

Usage::

    row = test_row(api_test, product_id=12, now=utc_now())
    row["end_at"]     # '2025-03-02T10:00:00Z', whatever offset the service used
    row["raw"]        # the full object as canonical JSON (fields added upstream are kept)
"""

from __future__ import annotations

import calendar
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from .errors import ConfigError
from .vocabulary import FINAL_STATUSES

Obj = dict[str, Any]


def is_final(status: str | None) -> bool:
    """True when a test with this status can no longer change; anything else (including
    values we do not know yet) is re-read by every incremental sync."""
    return status in FINAL_STATUSES


def canonical_json(obj: Obj) -> str:
    """The JSON text we store and compare: sorted keys, so equal content gives equal text."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def utc_text(moment: datetime) -> str:
    """A datetime as the UTC ISO text every timestamp in the store uses; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_utc(value: Any) -> str | None:
    """``'2025-03-02T11:00:00+01:00'`` -> ``'2025-03-02T10:00:00Z'``; None and junk -> None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if len(value) == 20 and value[10] == "T" and value[19] == "Z" and value[13] == value[16] == ":":
        return value  # already our form (most are): skip formatting, which costs CPU
    return utc_text(parsed)


Moment = str | date | datetime | None

_FORMS = (
    "YYYY-MM-DD, an ISO timestamp, a month YYYY-MM, a quarter YYYY-Q3, "
    "or a span back from now: 12h, 30d, 2w, 3mo, 1y"
)


def _months_back(moment: datetime, months: int) -> datetime:
    """``moment`` less whole calendar months (the day clipped to the month's length)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _span(text: str, now: datetime) -> datetime | None:
    """``"30d"`` -> now less 30 days; ``"3mo"`` -> less 3 calendar months; else None."""
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    if not number.isdigit() or not unit:
        return None
    n = int(number)
    hours = {"h": 1, "d": 24, "w": 7 * 24}
    if unit in hours:
        return now - timedelta(hours=n * hours[unit])
    if unit == "mo":
        return _months_back(now, n)
    if unit == "y":
        return _months_back(now, 12 * n)
    return None


def _calendar(text: str) -> tuple[date, date] | None:
    """A month ``2026-07`` or quarter ``2026-Q3`` (``2026Q3``) -> (first day, next first day)."""
    upper = text.upper().replace("Q", "-Q").replace("--", "-")
    year, _, rest = upper.partition("-")
    if len(year) != 4 or not year.isdigit():
        return None
    if rest.startswith("Q") and rest[1:] in ("1", "2", "3", "4"):
        first_month, months = 3 * (int(rest[1:]) - 1) + 1, 3
    elif len(rest) == 2 and rest.isdigit() and 1 <= int(rest) <= 12:
        first_month, months = int(rest), 1
    else:
        return None
    first = date(int(year), first_month, 1)
    index = int(year) * 12 + first_month - 1 + months
    return first, date(index // 12, index % 12 + 1, 1)


def parse_since(
    value: Moment, *, end: bool = False, what: str = "since", now: datetime | None = None
) -> str | None:
    """A ``since`` (or, with ``end=True``, an ``until``) argument -> UTC ISO text, or None.

    Accepts ``"2026-03-01"``, an ISO timestamp, a ``date``/``datetime``, a month
    ``"2026-07"``, a quarter ``"2026-Q3"``, or a span back from now: ``"12h"``, ``"30d"``,
    ``"2w"``, ``"3mo"`` (calendar months), ``"1y"``. ``since`` is where a period begins
    (inclusive); ``until`` where it ends (exclusive): a date, month or quarter given as
    ``until`` includes all of it (``until="2026-Q3"`` means before 2026-10-01). Anything
    else is a ConfigError naming the valid forms (``"3m"`` too: months are ``"3mo"``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        return f"{day.isoformat()}T00:00:00Z"
    text = str(value).strip()
    moment = _span(text.lower(), now or datetime.now(UTC))
    if moment is not None:
        return utc_text(moment)
    period = _calendar(text)
    if period is not None:
        return f"{period[end].isoformat()}T00:00:00Z"
    normalised = None
    try:
        if len(text) == 10:
            return parse_since(date.fromisoformat(text), end=end)
        if "T" in text or " " in text:
            normalised = to_utc(text)
    except ValueError:
        normalised = None
    if normalised is None:
        hint = " (months are written 3mo)" if text.lower().endswith("m") else ""
        raise ConfigError(f"{what} {text!r} is not a date{hint}: use {_FORMS}")
    return normalised


def product_row(obj: Obj, now: str) -> Obj:
    return {
        "id": int(obj["id"]),
        "name": obj.get("name"),
        "type": obj.get("type"),
        "description": obj.get("description"),
        "sectioned": int(is_sectioned(obj)),
        "raw": canonical_json(obj),
        "synced_at": now,
    }


def is_sectioned(product: Obj) -> bool:
    """A product lists its features per section when it has sections (see testio-api.md)."""
    return bool(product.get("sections")) or len(product.get("sections_with_default") or []) > 1


def section_ids(product: Obj) -> list[int]:
    """The sections whose features to read, for a sectioned product."""
    listed = product.get("sections") or product.get("sections_with_default") or []
    return [int(section["id"]) for section in listed]


def test_row(obj: Obj, product_id: int, now: str) -> Obj:
    # The detail endpoint adds `product`; drop it so list and detail store identical JSON.
    body = {key: value for key, value in obj.items() if key != "product"}
    return {
        "id": int(body["id"]),
        "product_id": product_id,
        "title": body.get("title"),
        "status": body.get("status"),
        "testing_type": body.get("testing_type"),
        "start_at": to_utc(body.get("start_at")),
        "end_at": to_utc(body.get("end_at")),
        "created_at": to_utc(body.get("created_at")),
        "raw": canonical_json(body),
        "synced_at": now,
    }


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def bug_row(obj: Obj, product_id: int, now: str) -> Obj:
    test = obj.get("test") or {}
    author = obj.get("author") or {}
    return {
        "id": int(obj["id"]),
        "test_id": int(test["id"]),
        "product_id": product_id,
        "title": obj.get("title"),
        "severity": obj.get("severity"),
        "status": obj.get("status"),
        "known": _flag(obj.get("known")),
        "auto_accepted": _flag(obj.get("auto_accepted")),
        "created_at": to_utc(obj.get("created_at")),
        "author": author.get("name") if isinstance(author, dict) else None,
        "raw": canonical_json(obj),
        "synced_at": now,
    }


def feature_row(obj: Obj, product_id: int, section_id: int | None, now: str) -> Obj:
    stories = obj.get("user_stories")
    return {
        "id": int(obj["id"]),
        "product_id": product_id,
        "section_id": section_id,
        "title": obj.get("title"),
        "description": obj.get("description"),
        "howtofind": obj.get("howtofind"),
        "user_stories": None if stories is None else json.dumps(stories, ensure_ascii=False),
        "raw": canonical_json(obj),
        "synced_at": now,
    }
