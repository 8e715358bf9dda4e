"""Health measures, defined once: pure functions over the frames ``frames.py`` reads.

Usage::

    tt.health(by="product", period="month")        # coloured by the playbook thresholds
    tt.health(by="feature", period="quarter", product=12, since="2026-Q1")
    tt.review_times(product=12)                    # when each bug was first seen decided

The measures (per group and period; a bug counts in the period of its ``created_at``, a
test in the period of its ``end_at``):

- ``tests_run``: tests that started (status ``running`` or later), cancelled ones left out.
- ``bugs``: bugs reported. ``bugs_per_test = bugs / tests_run`` (NA without a test run).
- ``accepted``, ``rejected``: bugs with that status; ``decided = accepted + rejected``.
  Bugs still open (``forwarded``, ``submitted``, ...) count in ``bugs`` only.
- ``auto_accepted``: accepted bugs whose ``auto_accepted`` flag is true (no one reviewed
  them; the service accepts a bug automatically after 10 days). ``manual_accepted``: the
  flag is false. ``flag_unknown``: accepted bugs without the flag (older records lack it).
- ``rejection_rate = rejected / decided``.
- ``auto_acceptance_rate = auto_accepted / (auto_accepted + manual_accepted)``.
- ``review_rate = (rejected + manual_accepted) / (rejected + manual_accepted + auto_accepted)``:
  the share of decided bugs a person decided (a rejection is always a person's).

A missing ``auto_accepted`` flag is **left out of both denominators** (and counted in
``flag_unknown``): an accepted bug without the flag may have been reviewed or not, so
counting it as "not auto-accepted" would make review look better than anyone knows. The
rejection rate needs no flag and uses every decided bug. A rate whose denominator is 0 is NA.

- Severity mix: ``<severity>_share``, the share of the period's bugs of each severity seen.
- ``review_hours_median`` (with ``review_times``): the median of the upper bounds of the
  time to review (see :func:`review_times`) of the group's bugs a person decided.

Grouping: ``by`` is ``"product"``, ``"feature"``, ``"test"``, ``"account"`` or None (all),
or a list of them; ``period`` is ``"week"``, ``"month"``, ``"quarter"`` or None. An
``account`` column in the frames given (a portfolio's) is kept as the first key. Every
period between the first and the last one seen is a row, empty ones included (counts 0,
rates NA).

Thresholds (``THRESHOLDS``, the playbook's; pass ``thresholds=`` to change them):
rejection under 20% healthy, 20-35% warning, over 35% critical; auto-acceptance under 20%,
20-40%, over 40%; review over 80%, 60-80%, under 60%.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from .errors import ConfigError
from .vocabulary import DECIDED_BUG_STATUSES, BugStatus, RunStatus, TestStatus

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"


@dataclass(frozen=True)
class Threshold:
    """Where a rate turns from healthy to warning (``healthy``) and to critical
    (``critical``); ``higher_is_better`` for the review rate."""

    healthy: float
    critical: float
    higher_is_better: bool = False

    def grade(self, value: Any) -> str | None:
        """``Threshold(0.2, 0.35).grade(0.3)`` -> ``'warning'``; NA -> None."""
        if value is None or pd.isna(value):
            return None
        v = float(value)
        if self.higher_is_better:
            return HEALTHY if v > self.healthy else CRITICAL if v < self.critical else WARNING
        return HEALTHY if v < self.healthy else CRITICAL if v > self.critical else WARNING


THRESHOLDS: dict[str, Threshold] = {
    "rejection_rate": Threshold(0.20, 0.35),
    "auto_acceptance_rate": Threshold(0.20, 0.40),
    "review_rate": Threshold(0.80, 0.60, higher_is_better=True),
}

PERIODS = {"week": "W", "month": "M", "quarter": "Q"}
GROUPS = {"product": "product", "feature": "feature", "test": "test", "account": "account"}
COLOURS = {HEALTHY: "#d4edda", WARNING: "#fff3cd", CRITICAL: "#f8d7da"}

# Tests that never ran: not started yet, or called off.
_NOT_RUN = frozenset({TestStatus.INITIALIZED, TestStatus.WAITING, TestStatus.CANCELLED})
_COUNTS = (
    "tests_run",
    "bugs",
    "accepted",
    "auto_accepted",
    "manual_accepted",
    "flag_unknown",
    "rejected",
    "decided",
)


def thresholds_with(changes: Mapping[str, Any] | None) -> dict[str, Threshold]:
    """The playbook's thresholds with ``changes`` applied: a ``Threshold`` or a pair
    ``(healthy, critical)``, by rate name. An unknown name is a ConfigError."""
    merged = dict(THRESHOLDS)
    for name, value in (changes or {}).items():
        if name not in THRESHOLDS:
            raise ConfigError(
                f"no threshold for {name!r}: thresholds exist for {', '.join(THRESHOLDS)}"
            )
        if isinstance(value, Threshold):
            merged[name] = value
        else:
            try:
                healthy, critical = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"threshold {name}={value!r}: give (healthy, critical), e.g. (0.2, 0.35)"
                ) from None
            merged[name] = Threshold(healthy, critical, THRESHOLDS[name].higher_is_better)
    return merged


class HealthFrame(pd.DataFrame):
    """A DataFrame of health measures whose notebook display colours each rate by its
    threshold (green healthy, amber warning, red critical). Everything else is a DataFrame:
    ``.to_csv()``, ``.loc``, ``.plot()``. ``frame.grades()`` gives the words."""

    # pandas' documented way to subclass: metadata and a constructor that keeps the class.
    _metadata: ClassVar[list[str]] = ["thresholds"]
    thresholds: dict[str, Threshold]

    @property
    def _constructor(self) -> type[HealthFrame]:
        return HealthFrame

    def _limits(self) -> dict[str, Threshold]:
        return getattr(self, "thresholds", None) or THRESHOLDS

    def grades(self) -> pd.DataFrame:
        """``healthy`` / ``warning`` / ``critical`` (or None) for each graded rate."""
        limits = self._limits()
        return pd.DataFrame(
            {c: [limits[c].grade(v) for v in self[c]] for c in limits if c in self.columns},
            index=self.index,
        )

    def worst(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` rows with the most critical, then warning, grades (the panel's card)."""
        grades = self.grades()
        score = (grades == CRITICAL).sum(axis=1) * 10 + (grades == WARNING).sum(axis=1)
        order = score.sort_values(ascending=False, kind="stable")
        return pd.DataFrame(self.loc[order[order > 0].index[:n]])

    def styled(self) -> Any:
        """The pandas ``Styler`` the notebook shows: rates as percentages, coloured."""
        plain = pd.DataFrame(self)
        grades = self.grades()
        rates: list[Any] = [c for c in plain.columns if str(c).endswith(("_rate", "_share"))]
        hours: list[Any] = [c for c in plain.columns if str(c).endswith("_hours_median")]

        def colour(column: pd.Series) -> list[str]:
            if column.name not in grades.columns:
                return [""] * len(column)
            return [
                f"background-color: {COLOURS[g]}" if isinstance(g, str) else ""
                for g in grades[column.name]
            ]

        return (
            plain.style.set_uuid("testio-health")  # a fixed id: the same HTML each time
            .apply(colour, axis=0)
            .format("{:.0%}", subset=rates, na_rep="-")
            .format("{:.1f}", subset=hours, na_rep="-")
        )

    def _repr_html_(self) -> str | None:
        html: str = self.styled().to_html()
        return html


def _keys(by: str | Sequence[str] | None, frames: Iterable[pd.DataFrame]) -> list[str]:
    wanted = [] if by is None else [by] if isinstance(by, str) else list(by)
    unknown = [k for k in wanted if k not in GROUPS]
    if unknown:
        raise ConfigError(
            f"cannot group by {', '.join(map(repr, unknown))}: use one or more of "
            f"{', '.join(GROUPS)}, or None for the whole mirror"
        )
    keys: list[str] = []
    for name in wanted:
        # A feature's title is its product's: grouping by feature keeps the product too.
        for key in (["product"] if name == "feature" else []) + [GROUPS[name]]:
            if key not in keys:
                keys.append(key)
    if "account" not in keys and all("account" in f.columns for f in frames):
        keys.insert(0, "account")
    return keys


def _period(frame: pd.DataFrame, column: str, period: str | None) -> pd.Series:
    if period is None:
        return pd.Series("all", index=frame.index, dtype="object")
    if period not in PERIODS:
        raise ConfigError(f"period {period!r}: use week, month, quarter or None")
    moments = frame[column].dt.tz_convert(None)
    periods: pd.Series = moments.dt.to_period(PERIODS[period]).astype("object")
    return periods


def _bug_flags(bugs: pd.DataFrame) -> pd.DataFrame:
    status = bugs["status"].astype("object")
    flag = bugs["auto_accepted"].astype("boolean")
    accepted = status == BugStatus.ACCEPTED
    return pd.DataFrame(
        {
            "bugs": 1,
            "accepted": accepted.astype(int),
            "auto_accepted": (accepted & (flag == True)).fillna(False).astype(int),  # noqa: E712
            "manual_accepted": (accepted & (flag == False)).fillna(False).astype(int),  # noqa: E712
            "flag_unknown": (accepted & flag.isna()).astype(int),
            "rejected": (status == BugStatus.REJECTED).astype(int),
        },
        index=bugs.index,
    )


def _with_test_keys(tests: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = tests.rename(columns={"title": "test"})
    if "feature" in keys:
        frame = frame.assign(feature=frame["features"]).explode("feature")
    return frame


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    num = numerator.astype("Float64")
    den = denominator.astype("Float64")
    ratio: pd.Series = (num / den.where(den > 0)).astype("Float64")
    return ratio


def health(
    bugs: pd.DataFrame,
    tests: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = "product",
    period: str | None = "month",
    thresholds: Mapping[str, Any] | None = None,
    reviews: pd.DataFrame | None = None,
) -> HealthFrame:
    """The health measures (see the module's docstring) of the ``bugs`` and ``tests``
    frames given, one row per group and period.

    >>> metrics.health(tt.bugs(), tt.tests(), by="product", period="quarter")
    """
    limits = thresholds_with(thresholds)
    keys = _keys(by, (bugs, tests))
    bug_rows = bugs.rename(columns={"test_title": "test"})
    counted = pd.concat([bug_rows[keys], _bug_flags(bug_rows)], axis=1)
    counted["period"] = _period(bug_rows, "created_at", period)
    ran = tests[~tests["status"].astype("object").isin(_NOT_RUN) & tests["end_at"].notna()]
    test_rows = _with_test_keys(ran, keys)
    tests_run = test_rows[keys].assign(period=_period(test_rows, "end_at", period), tests_run=1)
    index = [*keys, "period"]
    parts = [
        counted.groupby(index, dropna=False, observed=True).sum(numeric_only=True),
        tests_run.groupby(index, dropna=False, observed=True).sum(numeric_only=True),
    ]
    table = pd.concat(parts, axis=1).fillna(0)
    table = _fill_periods(table, keys, period)
    for column in _COUNTS:
        if column not in table.columns:
            table[column] = 0
    table = table.astype({c: "int64" for c in _COUNTS if c != "decided"})
    table["decided"] = table["accepted"] + table["rejected"]
    table["bugs_per_test"] = _ratio(table["bugs"], table["tests_run"])
    table["rejection_rate"] = _ratio(table["rejected"], table["decided"])
    known = table["auto_accepted"] + table["manual_accepted"]
    table["auto_acceptance_rate"] = _ratio(table["auto_accepted"], known)
    reviewed = table["rejected"] + table["manual_accepted"]
    table["review_rate"] = _ratio(reviewed, reviewed + table["auto_accepted"])
    if reviews is not None:
        table["review_hours_median"] = _review_median(reviews, keys, period, table.index)
    for severity, share in _severity_shares(bug_rows, index, period).items():
        table[f"{severity}_share"] = share.reindex(table.index).astype("Float64")
    table = table[[*_COUNTS, *[c for c in table.columns if c not in _COUNTS]]]
    result = HealthFrame(table.reset_index())
    result["period"] = result["period"].astype(str)
    if period is None:
        result = HealthFrame(result.drop(columns=["period"]))
    result.thresholds = limits
    return result


def _fill_periods(table: pd.DataFrame, keys: list[str], period: str | None) -> pd.DataFrame:
    """Every period between the first and the last one seen, for every group (empty
    periods are rows of zeros)."""
    if period is None or table.empty:
        return table
    seen = table.index.get_level_values("period")
    span = pd.period_range(min(seen), max(seen), freq=PERIODS[period]).astype("object")
    if keys:
        groups = pd.MultiIndex.from_tuples(
            [key[:-1] for key in table.index], names=table.index.names[:-1]
        ).unique()
        tuples = [(*(g if isinstance(g, tuple) else (g,)), p) for g in groups for p in span]
        full = pd.MultiIndex.from_tuples(tuples, names=table.index.names)
    else:
        full = pd.Index(list(span), name="period")
    return table.reindex(full, fill_value=0)


def _severity_shares(bugs: pd.DataFrame, index: list[str], period: str | None) -> dict[str, Any]:
    if bugs.empty:
        return {}
    frame = bugs[index[:-1]].assign(
        period=_period(bugs, "created_at", period), severity=bugs["severity"].astype("object")
    )
    counts = frame.groupby([*index, "severity"], dropna=False).size().unstack("severity")
    counts = counts.fillna(0)
    total = counts.sum(axis=1)
    return {str(s): counts[s] / total for s in counts.columns if isinstance(s, str)}


def _review_median(
    reviews: pd.DataFrame, keys: list[str], period: str | None, index: pd.Index
) -> pd.Series:
    person = reviews[~reviews["auto"].fillna(False).astype(bool)].rename(
        columns={"test_title": "test"}
    )
    if person.empty or any(k not in person.columns for k in keys):
        return pd.Series(pd.NA, index=index, dtype="Float64")
    frame = person[keys].assign(
        period=_period(person, "created_at", period), hours=person["review_hours_max"]
    )
    median = frame.groupby([*keys, "period"], dropna=False)["hours"].median()
    if not keys:
        median.index = pd.Index(median.index.get_level_values(-1), name="period")
    return median.reindex(index).astype("Float64")


# -- time to review ---------------------------------------------------------------------


def _hours(span: pd.Series) -> pd.Series:
    hours: pd.Series = span.dt.total_seconds() / 3600
    return hours


def review_times(bugs: pd.DataFrame, changes: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """When each bug was first seen decided after it was reported, from the change feed.

    No field of the service says when a bug was decided: the mirror sees it when a run
    reads the bug again. So each time is a window: the decision happened after the
    previous run that read the product successfully began (it saw the bug still open)
    and before the run that recorded the change ended. Columns: the bug's ``id``, ``product_id``,
    ``product``, ``test_id``, ``test_title``, ``feature``, ``severity``, ``created_at``,
    ``status`` (the decision), ``auto`` (the ``auto_accepted`` flag: no one reviewed it),
    ``decided_after`` / ``decided_by`` (the window), ``review_hours_min`` /
    ``review_hours_max`` (from ``created_at``) and ``precision_hours`` (the window's width,
    about the time between two syncs). A bug first seen already decided has no row: it was
    decided before the mirror watched it. An incremental sync re-reads the bugs of tests
    that can still change; a bug of an archived test decided later is seen by the next
    refresh, and its window starts at the previous run that read the product all the same.

    >>> tt.review_times(product=12).groupby("auto")["review_hours_max"].median()
    """
    columns = ["id", "product_id", "product", "test_id", "test_title", "feature", "severity"]
    columns += ["created_at", "status", "auto", "decided_after", "decided_by"]
    columns += ["review_hours_min", "review_hours_max", "precision_hours"]
    status_changes = changes[
        (changes["entity"].astype("object") == "bug")
        & (changes["kind"].astype("object") == "changed")
        & (changes["field"] == "status")
        & changes["new"].isin(sorted(DECIDED_BUG_STATUSES))
    ]
    first = status_changes.sort_values(["at", "id"]).drop_duplicates("entity_id")
    if first.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    pairs = zip(first["run_id"].astype(int), first["product_id"].astype(int), strict=True)
    windows = [_window(runs, run_id, product_id) for run_id, product_id in pairs]
    seen = pd.DataFrame(
        {
            "id": first["entity_id"].astype("Int64").to_numpy(),
            "status": first["new"].to_numpy(),
            "seen_after": pd.to_datetime([w[0] for w in windows], utc=True),
            "decided_by": pd.to_datetime([w[1] for w in windows], utc=True),
        }
    )
    extra = [c for c in ("feature", "account") if c in bugs.columns]
    known = bugs[["id", "product_id", "product", "test_id", "test_title", "severity", *extra]]
    frame = seen.merge(
        known.assign(created_at=bugs["created_at"], auto=bugs["auto_accepted"]),
        on="id",
        how="inner",
    )
    after = frame["seen_after"].where(frame["seen_after"] > frame["created_at"])
    frame["decided_after"] = after.fillna(frame["created_at"])
    frame["review_hours_min"] = _hours(frame["decided_after"] - frame["created_at"])
    frame["review_hours_max"] = _hours(frame["decided_by"] - frame["created_at"])
    frame["precision_hours"] = _hours(frame["decided_by"] - frame["decided_after"])
    frame["auto"] = frame["auto"].astype("boolean")
    if "feature" not in frame.columns:
        frame["feature"] = None
    return frame[columns + [c for c in ("account",) if c in frame.columns]]


def _window(runs: pd.DataFrame, run_id: int, product_id: int) -> tuple[Any, Any]:
    """(start of the previous run that read ``product_id`` successfully, end of run
    ``run_id``)."""
    this = runs[runs["id"] == run_id]
    end = this["ended_at"].iloc[0] if len(this) else None
    if end is None or pd.isna(end):
        end = this["started_at"].iloc[0] if len(this) else None
    earlier = runs[(runs["id"] < run_id) & (runs["mode"].astype("object") != "scrub")]
    statuses = earlier["product_status"] if "product_status" in earlier.columns else None
    read = [
        _reads(
            row.status, row.product_filter, None if statuses is None else statuses[i], product_id
        )
        for i, row in zip(earlier.index, earlier.itertuples(), strict=True)
    ]
    earlier = earlier[read]
    start = earlier["started_at"].max() if len(earlier) else None
    return (None if start is None or pd.isna(start) else start), end


def _reads(status: Any, product_filter: Any, per_product: Any, product_id: int) -> bool:
    """Whether a run read the product whole: its per-product outcome says success (a
    partial or failed product may not have seen the bug); without one (older runs), the
    run succeeded and its filter included the product."""
    if isinstance(per_product, dict) and per_product:
        return per_product.get(str(product_id)) == RunStatus.SUCCESS
    if str(status) not in (RunStatus.SUCCESS, RunStatus.PARTIAL):
        return False
    if product_filter is None or (not isinstance(product_filter, list) and pd.isna(product_filter)):
        return True
    return product_id in [int(p) for p in product_filter]
