"""The health measures (metrics.py) against values computed by hand on a small fixed data set:
NA flags, cancelled tests, empty periods, thresholds, time to review from change rows."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from testio_toolkit import ConfigError
from testio_toolkit.metrics import HealthFrame, Threshold, health, review_times


def _times(values: list[str | None]) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="object"), utc=True)


# Product A: January has five bugs (an auto-accepted one, a person's acceptance, an
# acceptance without the flag, a rejection, an open bug), February none, March one
# rejection. Product B: one auto-accepted bug in January and no test.
BUGS = [
    # id, product, created_at, status, auto_accepted, severity, feature
    (1, "A", "2026-01-05T00:00:00Z", "accepted", True, "high", "Login"),
    (2, "A", "2026-01-06T00:00:00Z", "accepted", False, "low", "Login"),
    (3, "A", "2026-01-07T00:00:00Z", "accepted", None, "low", "Cart"),
    (4, "A", "2026-01-08T00:00:00Z", "rejected", None, "critical", "Cart"),
    (5, "A", "2026-01-09T00:00:00Z", "forwarded", None, "low", "Cart"),
    (6, "A", "2026-03-02T00:00:00Z", "rejected", False, "high", "Login"),
    (7, "B", "2026-01-15T00:00:00Z", "accepted", True, "low", "Home"),
]
TESTS = [
    # id, product, status, end_at, features
    (11, "A", "archived", "2026-01-10T00:00:00Z", ["Login", "Cart"]),
    (12, "A", "cancelled", "2026-01-20T00:00:00Z", ["Login"]),  # called off: not run
    (13, "A", "running", "2026-03-05T00:00:00Z", ["Login"]),
    (14, "A", "initialized", None, ["Cart"]),  # never ran
]


def frame_of_bugs(rows: list[tuple[Any, ...]] = BUGS) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows,
        columns=["id", "product", "created_at", "status", "auto_accepted", "severity", "feature"],
    )
    frame["product_id"] = [1 if p == "A" else 2 for p in frame["product"]]
    frame["test_id"] = 11
    frame["test_title"] = "Coverage 1"
    frame["created_at"] = _times(list(frame["created_at"]))
    frame["auto_accepted"] = frame["auto_accepted"].astype("boolean")
    frame["status"] = pd.Categorical(frame["status"])
    return frame


def frame_of_tests() -> pd.DataFrame:
    frame = pd.DataFrame(TESTS, columns=["id", "product", "status", "end_at", "features"])
    frame["title"] = [f"Test {i}" for i in frame["id"]]
    frame["end_at"] = _times(list(frame["end_at"]))
    frame["status"] = pd.Categorical(frame["status"])
    return frame


def row(frame: pd.DataFrame, **keys: Any) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for name, value in keys.items():
        mask &= frame[name] == value
    assert mask.sum() == 1, (keys, frame)
    return frame[mask].iloc[0]


def test_the_counts_and_rates_of_a_month_match_the_hand_computed_ones() -> None:
    frame = health(frame_of_bugs(), frame_of_tests(), by="product", period="month")
    jan = row(frame, product="A", period="2026-01")

    assert (jan["tests_run"], jan["bugs"], jan["decided"]) == (1, 5, 4)  # cancelled: not run
    assert (jan["accepted"], jan["auto_accepted"], jan["manual_accepted"]) == (3, 1, 1)
    assert (jan["flag_unknown"], jan["rejected"]) == (1, 1)
    assert jan["bugs_per_test"] == 5.0
    assert jan["rejection_rate"] == pytest.approx(1 / 4)  # every decided bug counts
    # The acceptance without a flag is in neither denominator: 1 auto of 2 known.
    assert jan["auto_acceptance_rate"] == pytest.approx(1 / 2)
    assert jan["review_rate"] == pytest.approx(2 / 3)  # rejection + person's acceptance
    assert jan["low_share"] == pytest.approx(3 / 5)
    assert jan["high_share"] == pytest.approx(1 / 5)
    assert jan["critical_share"] == pytest.approx(1 / 5)


def test_an_empty_period_is_a_row_of_zeros_with_na_rates() -> None:
    frame = health(frame_of_bugs(), frame_of_tests(), by="product", period="month")

    assert list(frame["period"][frame["product"] == "A"]) == ["2026-01", "2026-02", "2026-03"]
    feb = row(frame, product="A", period="2026-02")
    assert (feb["tests_run"], feb["bugs"], feb["decided"]) == (0, 0, 0)
    for rate in ("bugs_per_test", "rejection_rate", "auto_acceptance_rate", "review_rate"):
        assert pd.isna(feb[rate]), rate
    mar = row(frame, product="A", period="2026-03")
    assert (mar["tests_run"], mar["bugs"], mar["rejection_rate"]) == (1, 1, 1.0)
    assert pd.isna(mar["auto_acceptance_rate"])  # no accepted bug: nothing to divide
    assert mar["review_rate"] == 1.0
    b_jan = row(frame, product="B", period="2026-01")
    assert b_jan["tests_run"] == 0 and pd.isna(b_jan["bugs_per_test"])
    assert (b_jan["auto_acceptance_rate"], b_jan["review_rate"]) == (1.0, 0.0)


def test_the_whole_mirror_in_one_row_and_quarters() -> None:
    whole = health(frame_of_bugs(), frame_of_tests(), by=None, period=None)

    assert len(whole) == 1 and "period" not in whole.columns
    one = whole.iloc[0]
    assert (one["tests_run"], one["bugs"], one["accepted"], one["rejected"]) == (2, 7, 4, 2)
    assert one["auto_acceptance_rate"] == pytest.approx(2 / 3)  # 2 auto of 3 known
    assert one["review_rate"] == pytest.approx(3 / 5)  # 2 rejections + 1 person of 5
    quarters = health(frame_of_bugs(), frame_of_tests(), by=None, period="quarter")
    assert list(quarters["period"]) == ["2026Q1"]
    assert quarters.iloc[0]["bugs"] == 7


def test_per_feature_a_test_counts_once_for_each_feature_it_lists() -> None:
    frame = health(frame_of_bugs(), frame_of_tests(), by="feature", period=None)

    login = row(frame, product="A", feature="Login")
    cart = row(frame, product="A", feature="Cart")
    assert (login["tests_run"], login["bugs"], login["rejected"]) == (2, 3, 1)  # 11 and 13
    assert (cart["tests_run"], cart["bugs"], cart["flag_unknown"]) == (1, 3, 1)


def test_a_portfolio_keeps_its_account_column_as_the_first_key() -> None:
    bugs = frame_of_bugs().assign(account="acme")
    bugs.loc[bugs["product"] == "B", "account"] = "globex"
    tests = frame_of_tests().assign(account="acme")

    frame = health(bugs, tests, by="product", period=None)

    assert list(frame.columns[:2]) == ["account", "product"]
    assert row(frame, account="globex", product="B")["bugs"] == 1
    per_account = health(bugs, tests, by="account", period=None)
    assert dict(zip(per_account["account"], per_account["bugs"], strict=True)) == {
        "acme": 6,
        "globex": 1,
    }


def test_thresholds_grade_at_the_playbook_boundaries_and_can_be_moved() -> None:
    rejection = Threshold(0.20, 0.35)
    assert [rejection.grade(v) for v in (0.19, 0.20, 0.35, 0.36)] == [
        "healthy",
        "warning",
        "warning",
        "critical",
    ]
    review = Threshold(0.80, 0.60, higher_is_better=True)
    assert [review.grade(v) for v in (0.81, 0.80, 0.60, 0.59, None)] == [
        "healthy",
        "warning",
        "warning",
        "critical",
        None,
    ]

    frame = health(frame_of_bugs(), frame_of_tests(), by="product", period="month")
    jan = frame.index[(frame["product"] == "A") & (frame["period"] == "2026-01")][0]
    grades = frame.grades()
    assert grades.loc[jan].to_dict() == {
        "rejection_rate": "warning",
        "auto_acceptance_rate": "critical",
        "review_rate": "warning",
    }
    moved = health(
        frame_of_bugs(), frame_of_tests(), thresholds={"rejection_rate": (0.3, 0.5)}, period="month"
    )
    assert moved.grades().loc[jan, "rejection_rate"] == "healthy"
    with pytest.raises(ConfigError, match="thresholds exist for rejection_rate"):
        health(frame_of_bugs(), frame_of_tests(), thresholds={"speed": (1, 2)})
    with pytest.raises(ConfigError, match="give \\(healthy, critical\\)"):
        health(frame_of_bugs(), frame_of_tests(), thresholds={"review_rate": "high"})


def coloured_cells(html: str, colour: str) -> set[tuple[int, int]]:
    """(row, column) of the cells the Styler's CSS gives ``colour``."""
    cells = set()
    for selectors, value in re.findall(r"([^{}]+)\{\s*background-color: (#\w+);\s*\}", html):
        if value == colour:
            for row_, col in re.findall(r"_row(\d+)_col(\d+)", selectors):
                cells.add((int(row_), int(col)))
    return cells


def test_the_display_colours_each_rate_by_its_grade_and_stays_a_dataframe() -> None:
    frame = health(frame_of_bugs(), frame_of_tests(), by="product", period="month")

    html = frame._repr_html_()

    assert html is not None
    grades = frame.grades()
    for word, colour in (("critical", "#f8d7da"), ("warning", "#fff3cd"), ("healthy", "#d4edda")):
        assert coloured_cells(html, colour) == {
            (int(r), int(frame.columns.get_loc(c)))
            for c in grades.columns
            for r in grades.index[grades[c] == word]
        }, word
    assert isinstance(frame, HealthFrame) and isinstance(frame.head(2), HealthFrame)
    assert frame.to_csv(index=False).splitlines()[0].startswith("product,period,tests_run,bugs")
    worst = frame.worst(2)
    assert list(worst["product"]) == ["B", "A"]  # B: two critical rates; A January: one


def test_bad_groupings_and_periods_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot group by 'colour'"):
        health(frame_of_bugs(), frame_of_tests(), by="colour")
    with pytest.raises(ConfigError, match="use week, month, quarter or None"):
        health(frame_of_bugs(), frame_of_tests(), period="fortnight")


def test_empty_frames_give_an_empty_table() -> None:
    frame = health(frame_of_bugs([]), frame_of_tests().iloc[0:0], by="product", period="month")

    assert frame.empty and "rejection_rate" in frame.columns


# -- time to review -------------------------------------------------------------------------

RUNS = [
    # id, mode, status, started_at, ended_at, product_filter
    (1, "sync", "success", "2026-01-07T00:00:00Z", "2026-01-07T00:05:00Z", None),
    (2, "sync", "success", "2026-01-10T00:00:00Z", "2026-01-10T00:10:00Z", None),
    (3, "refresh", "failed", "2026-03-03T00:00:00Z", "2026-03-03T00:01:00Z", None),
    (4, "sync", "success", "2026-03-03T12:00:00Z", "2026-03-03T12:05:00Z", [2]),
    (5, "sync", "success", "2026-03-04T00:00:00Z", "2026-03-04T00:10:00Z", None),
]
CHANGES = [
    # id, run_id, entity_id, product_id, kind, field, old, new
    (1, 2, 1, 1, "changed", "status", "forwarded", "accepted"),
    (2, 2, 2, 1, "changed", "status", "forwarded", "accepted"),
    (3, 5, 4, 1, "changed", "status", "forwarded", "question"),  # not a decision
    (4, 5, 6, 1, "changed", "status", "forwarded", "rejected"),
    (5, 5, 2, 1, "changed", "status", "accepted", "rejected"),  # not the first decision
    (6, 5, 3, 1, "changed", "severity", "low", "high"),
    (7, 1, 5, 1, "added", None, None, None),
]


def runs_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        RUNS, columns=["id", "mode", "status", "started_at", "ended_at", "product_filter"]
    )
    for column in ("started_at", "ended_at"):
        frame[column] = _times(list(frame[column]))
    return frame


def changes_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        CHANGES,
        columns=["id", "run_id", "entity_id", "product_id", "kind", "field", "old", "new"],
    )
    at = {r[0]: r[3] for r in RUNS}
    frame["at"] = _times([at[r] for r in frame["run_id"]])
    frame["entity"] = "bug"
    return frame


def test_time_to_review_is_a_window_between_the_runs_around_the_decision() -> None:
    times = review_times(frame_of_bugs(), changes_frame(), runs_frame()).set_index("id")

    assert sorted(times.index) == [1, 2, 6]  # decisions only, each bug once
    two = times.loc[2]
    # Seen open by run 1 (began 01-07), seen accepted by run 2 (ended 01-10 00:10).
    assert two["status"] == "accepted" and not two["auto"]
    assert two["decided_after"] == pd.Timestamp("2026-01-07T00:00:00Z")
    assert two["decided_by"] == pd.Timestamp("2026-01-10T00:10:00Z")
    assert two["review_hours_min"] == pytest.approx(24.0)
    assert two["review_hours_max"] == pytest.approx(96 + 10 / 60)
    assert two["precision_hours"] == pytest.approx(72 + 10 / 60)
    six = times.loc[6]
    # Run 3 failed and run 4 read another product; run 2 began before the bug existed.
    assert six["decided_after"] == pd.Timestamp("2026-03-02T00:00:00Z")
    assert six["review_hours_min"] == 0.0
    assert six["review_hours_max"] == pytest.approx(48 + 10 / 60)
    assert bool(times.loc[1, "auto"]) is True


def test_a_run_whose_outcome_for_the_product_was_not_success_is_no_lower_bound() -> None:
    runs = runs_frame()
    # Run 1 read product 1 only partially (the list moved): it may not have seen bug 2.
    runs["product_status"] = [{"1": "partial"}, {"1": "success"}, None, None, None]

    times = review_times(frame_of_bugs(), changes_frame(), runs).set_index("id")

    assert times.loc[2, "decided_after"] == pd.Timestamp("2026-01-06T00:00:00Z")  # created
    assert times.loc[2, "review_hours_min"] == 0.0
    # Run 2 read it whole: bug 6's window still starts at its creation (after run 2).
    assert times.loc[6, "decided_after"] == pd.Timestamp("2026-03-02T00:00:00Z")


def test_the_health_median_leaves_auto_accepted_bugs_out() -> None:
    reviews = review_times(frame_of_bugs(), changes_frame(), runs_frame())

    frame = health(frame_of_bugs(), frame_of_tests(), by="product", period="month", reviews=reviews)

    jan = row(frame, product="A", period="2026-01")
    assert jan["review_hours_median"] == pytest.approx(96 + 10 / 60)  # bug 2; bug 1 is auto
    assert row(frame, product="A", period="2026-03")["review_hours_median"] == pytest.approx(
        48 + 10 / 60
    )
    assert pd.isna(row(frame, product="A", period="2026-02")["review_hours_median"])


def test_no_decision_in_the_feed_gives_an_empty_frame_with_the_columns() -> None:
    none = changes_frame()[changes_frame()["kind"] == "added"]

    times = review_times(frame_of_bugs(), none, runs_frame())

    assert times.empty and {"review_hours_min", "review_hours_max", "auto"} <= set(times.columns)
