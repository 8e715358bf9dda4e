"""Questions across accounts: ``tt.portfolio``, frames with an ``account`` column.

Usage::

    tt.portfolio.accounts()                          # name, URL, mirror, size, last run, age
    tt.portfolio.bugs(severity="critical", since="30d")
    tt.portfolio.tests(status="running")
    tt.portfolio.query("SELECT severity, count(*) AS n FROM bugs GROUP BY severity")

Every mirror is read on its own, read-only, with the same SQL and filters as the one-account
frames (``frames.py``), and the answers are concatenated with the account's name in front.
Why not one query over every file: SQLite's ``ATTACH`` stops at 10 databases (the default
``SQLITE_MAX_ATTACHED``), and DuckDB's SQLite reader is an extension downloaded on first
use, which a machine without internet (CI) cannot fetch. Reading the mirrors one at a time
never holds more than one mirror's rows in flight beyond the answer itself, works offline, and
``query`` lets SQLite do the grouping in each file so that only the small answers travel.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import accounts as _accounts
from .errors import StoreError
from .scrub import scrub_before_reading
from .store import Store, translate_error

if TYPE_CHECKING:
    import pandas as pd

    from . import frames as _frames
    from .metrics import HealthFrame

Names = str | Iterable[str] | None


def _chosen(names: Names) -> list[_accounts.Account]:
    registry = _accounts.load()
    wanted = [names] if isinstance(names, str) else list(names or registry.names())
    return [registry.get(name) for name in wanted]


def _gather(names: Names, read: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
    """``read`` each account's mirror (those synced at least once), account column first."""
    import pandas as pd

    pieces: list[pd.DataFrame] = []
    missing: list[str] = []
    for account in _chosen(names):
        if not account.db_path.exists():
            missing.append(account.name)
            continue
        scrub_before_reading(account.db_path)  # a mirror made before credentials were redacted
        frame = read(account.db_path)
        frame.insert(0, "account", account.name)
        pieces.append(frame)
    if not pieces:
        result = pd.DataFrame({"account": pd.Series([], dtype="object")})
    else:
        result = pd.concat([p for p in pieces if len(p)] or pieces[:1], ignore_index=True)
    result["account"] = result["account"].astype("category")
    # Accounts without a mirror yet (never synced): named, not silently absent.
    result.attrs["not_synced"] = missing
    return result


def products(accounts: Names = None, *, include_deleted: bool = False) -> pd.DataFrame:
    """Every account's products: ``tt.portfolio.products()`` (account, id, name, tests ...)."""
    from . import frames

    return _gather(accounts, lambda path: frames.products(path, include_deleted=include_deleted))


def tests(
    accounts: Names = None,
    status: _frames.Filter = None,
    since: str | None = None,
    *,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """Every account's tests: ``tt.portfolio.tests(status="running", since="30d")``."""
    from . import frames

    return _gather(
        accounts,
        lambda path: frames.tests(
            path, status=status, since=since, include_deleted=include_deleted
        ),
    )


def bugs(
    accounts: Names = None,
    status: _frames.Filter = None,
    severity: _frames.Filter = None,
    since: str | None = None,
    *,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """Every account's bugs: ``tt.portfolio.bugs(severity="critical", since="30d")``."""
    from . import frames

    return _gather(
        accounts,
        lambda path: frames.bugs(
            path, status=status, severity=severity, since=since, include_deleted=include_deleted
        ),
    )


def runs(accounts: Names = None) -> pd.DataFrame:
    """Every account's run history: ``tt.portfolio.runs()``."""
    from . import frames

    return _gather(accounts, frames.runs)


def changes(
    accounts: Names = None,
    since: str | None = "7d",
    entity: _frames.Filter = None,
    kind: _frames.Filter = None,
) -> pd.DataFrame:
    """What the runs changed, every account: ``tt.portfolio.changes(since="7d")``."""
    from . import frames

    return _gather(
        accounts, lambda path: frames.changes(path, since=since, entity=entity, kind=kind)
    )


def query(sql: str, params: Sequence[Any] = (), accounts: Names = None) -> pd.DataFrame:
    """The same read-only SQL on every account's mirror, answers concatenated:

    >>> tt.portfolio.query("SELECT severity, count(*) AS n FROM bugs GROUP BY severity")

    The connection is read-only: a statement that writes fails and changes nothing.
    """
    import pandas as pd

    def read(path: Path) -> pd.DataFrame:
        with Store.open_read_only(path) as store:
            try:
                cursor = store.conn.execute(sql, tuple(params))
                names = [column[0] for column in cursor.description or ()]
                return pd.DataFrame(cursor.fetchall(), columns=names)
            except sqlite3.Error as exc:
                raise translate_error(exc, path) from None

    return _gather(accounts, read)


def overview(accounts: Names = None) -> list[dict[str, Any]]:
    """One dict per account: name, default, url, token source and its last characters,
    mirror path, size, last run (mode, status, ended) and its age in hours."""
    registry = _accounts.load()
    rows = []
    for account in _chosen(accounts):
        secret, source = _accounts.read_token(account)
        value = secret.reveal() if secret is not None else ""
        # At most the last 4 characters, and none of a short token.
        tail = f"...{value[-4:]}" if len(value) >= 12 else ""
        row: dict[str, Any] = {
            "account": account.name,
            "default": account.name == registry.default,
            "url": account.base_url,
            "token": source,
            "token_end": tail,
            "db_path": str(account.db_path),
            "size_mb": 0.0,
            "last_run": None,
            "last_status": None,
            "hours_ago": None,
        }
        if account.db_path.exists():
            row["size_mb"] = round(account.db_path.stat().st_size / 1e6, 2)
            try:
                with Store.open_read_only(account.db_path) as store:
                    last = max(store.last_runs().values(), key=lambda r: r["id"], default=None)
            except StoreError:
                last = None
            if last is not None:
                row["last_run"] = f"{last['mode']} {last['started_at']}"
                row["last_status"] = last["status"]
                row["hours_ago"] = _hours_since(last.get("ended_at") or last["started_at"])
        rows.append(row)
    return rows


def accounts(names: Names = None) -> pd.DataFrame:
    """The accounts as a table: ``tt.portfolio.accounts()`` (freshness in ``hours_ago``)."""
    import pandas as pd

    return pd.DataFrame(overview(names))


def _hours_since(stamp: str) -> float | None:
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((time.time() - moment.timestamp()) / 3600, 1)


def health(
    accounts: Names = None,
    by: str | list[str] | None = "account",
    period: str | None = "month",
    since: str | None = None,
    *,
    thresholds: dict[str, Any] | None = None,
) -> HealthFrame:
    """The health measures (``testio_toolkit.metrics``) across accounts, coloured by the
    playbook's thresholds: ``tt.portfolio.health(period="quarter")`` (one row an account and
    quarter); ``by="product"`` keeps the account as the first key. Time to review is read
    per mirror (``tt.Mirror(account=...).health()``), not across them: run ids are a
    mirror's own."""
    from . import metrics

    return metrics.health(
        bugs(accounts, since=since),
        tests(accounts, since=since),
        by=by,
        period=period,
        thresholds=thresholds,
    )
