"""The DataFrame readers: documented dtypes, filters, joins, and rows gone upstream."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

import testio_toolkit as tt
from testio_toolkit.rows import to_utc
from testio_toolkit.sandbox import Sandbox

UTC_TIME = "datetime64[ns, UTC]"


def test_tests_frame_has_the_documented_dtypes(synced: tt.Mirror) -> None:
    frame = synced.tests()

    for column in ("start_at", "end_at", "created_at", "synced_at"):
        assert (
            str(frame[column].dtype).startswith("datetime64") and str(frame[column].dt.tz) == "UTC"
        )
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype)
    assert isinstance(frame["testing_type"].dtype, pd.CategoricalDtype)
    assert "archived" in frame["status"].cat.categories
    assert str(frame["id"].dtype) == "Int64"
    assert {"product", "bugs", "title"} <= set(frame.columns)
    assert "raw" not in frame.columns


def test_bugs_frame_joins_the_test_title_and_product(synced: tt.Mirror, sandbox: Sandbox) -> None:
    frame = synced.bugs()
    truth = sandbox.truth()

    assert len(frame) == len(truth.bugs)
    assert isinstance(frame["severity"].dtype, pd.CategoricalDtype)
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype)
    assert str(frame["known"].dtype) == "boolean"
    row = frame.iloc[0]
    assert row["test_title"] == truth.tests[int(row["test_id"])]["title"]
    assert row["product"] == truth.products[int(row["product_id"])]["name"]


def test_filters_narrow_the_frames(synced: tt.Mirror, sandbox: Sandbox) -> None:
    truth = sandbox.truth()
    product_id = sorted(truth.products)[0]

    running = synced.tests(product=product_id, status="running")

    expected = {
        t
        for t, v in truth.tests.items()
        if v["status"] == "running" and truth.product_of_test[t] == product_id
    }
    assert set(running["id"]) == expected
    critical = synced.bugs(severity=["critical"])
    expected_critical = {b for b, v in truth.bugs.items() if v["severity"] == "critical"}
    assert set(critical["id"]) == expected_critical and expected_critical


def test_the_csm_question_is_one_line(synced: tt.Mirror, sandbox: Sandbox) -> None:
    # "Accepted bugs per product by severity in the last 30 days" (of the data).
    # The sandbox's "now" is 2025-06-02, so its last 30 days start on 2025-05-03.
    table = (
        synced.bugs(status="accepted", since="2025-05-03")
        .groupby(["product", "severity"], observed=True)
        .size()
        .unstack(fill_value=0)
    )

    # The oracle: the same count straight from the sandbox's own bugs.
    truth = sandbox.truth()
    expected = Counter(
        (
            truth.products[truth.product_of_test[bug["test"]["id"]]]["name"],
            bug["severity"],
        )
        for bug in truth.bugs.values()
        if bug["status"] == "accepted" and (to_utc(bug["created_at"]) or "") >= "2025-05-03"
    )
    counted = {
        (product, str(severity)): int(n)
        for (product, severity), n in table.stack().items()
        if n > 0
    }
    assert counted == dict(expected)
    assert sum(expected.values()) > 0


def test_rows_gone_upstream_are_left_out_unless_asked(synced: tt.Mirror, sandbox: Sandbox) -> None:
    gone = sorted(sandbox.truth().tests)[0]
    sandbox.delete_tests([gone])
    synced.refresh()

    assert gone not in set(synced.tests()["id"])
    assert gone in set(synced.tests(include_deleted=True)["id"])


def test_runs_and_unreadable_frames(synced: tt.Mirror) -> None:
    runs = synced.runs()

    assert list(runs["mode"].astype(str)) == ["sync"]
    assert list(runs["status"].astype(str)) == ["success"]
    # The oracle for the duration: the run's own timestamps, read with SQL.
    conn = sqlite3.connect(synced.path)
    ((started, ended),) = conn.execute("SELECT started_at, ended_at FROM sync_runs").fetchall()
    conn.close()
    span = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    assert runs["seconds"].iloc[0] == pytest.approx(span.total_seconds())
    assert synced.unreadable().empty


def test_frames_of_a_missing_database_are_empty_not_an_error(mirror: tt.Mirror) -> None:
    assert mirror.tests().empty
    assert mirror.products().empty


def test_product_filter_takes_ids_and_names(synced: tt.Mirror) -> None:
    products = synced.products()
    pid, name = int(products["id"][0]), str(products["name"][0])
    by_id = synced.bugs(product=pid)
    assert len(by_id) > 0 and set(by_id["product_id"]) == {pid}
    assert synced.bugs(product=name.upper())["id"].tolist() == by_id["id"].tolist()
    assert synced.bugs(product=str(pid))["id"].tolist() == by_id["id"].tolist()
    assert len(synced.tests(product=[name, int(products["id"][1])])) == int(
        products["tests"][0] + products["tests"][1]
    )


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m: m.bugs(product="No Such Product"), ["unknown product 'No Such Product'"]),
        (lambda m: m.bugs(product=99999), ["unknown product 99999", "Flourish Pro"]),
        (lambda m: m.tests(product=99999), ["unknown product 99999"]),
        (lambda m: m.features(product="nope"), ["unknown product 'nope'"]),
        (lambda m: m.bugs(severity="urgent"), ["unknown severity 'urgent'", "critical", "custom"]),
        (lambda m: m.bugs(status="finished"), ["unknown bug status 'finished'", "accepted"]),
        (lambda m: m.tests(status="finished"), ["unknown test status 'finished'", "archived"]),
    ],
)
def test_filters_refuse_nonsense_and_name_the_valid_values(
    synced: tt.Mirror, call: Any, words: list[str]
) -> None:
    with pytest.raises(tt.ToolkitError) as caught:
        call(synced)
    assert isinstance(caught.value, ValueError)  # a ConfigError
    for word in words:
        assert word in str(caught.value)


def test_every_timestamp_is_a_utc_datetime_and_no_frame_holds_json(synced: tt.Mirror) -> None:
    synced.refresh(since="2025-01-01")
    frames = {
        "products": synced.products(),
        "tests": synced.tests(),
        "bugs": synced.bugs(),
        "features": synced.features(),
        "runs": synced.runs(),
        "unreadable": synced.unreadable(),
    }
    for name, frame in frames.items():
        for column in frame.columns:
            if column.endswith("_at") or column == "since":
                dtype = frame[column].dtype
                assert isinstance(dtype, pd.DatetimeTZDtype), f"{name}.{column}"
                assert str(dtype.tz) == "UTC", f"{name}.{column}"
            text = frame[column].dropna()
            if text.dtype == object and len(text) and isinstance(text.iloc[0], str):
                assert not text.str.match(r"^\s*[\[{]").any(), f"{name}.{column} holds JSON"
    runs = frames["runs"]
    assert "counts" not in runs.columns
    assert runs["tests_added"].tolist() == [150, 0] and str(runs["tests_added"].dtype) == "Int64"
    assert runs["unreadable"].tolist() == [0, 0]
    assert runs["since"].isna().tolist() == [True, False]
    assert isinstance(frames["features"]["user_stories"].iloc[0], list)


def test_shift_tab_shows_real_parameters() -> None:
    import inspect

    for name in ("sync", "refresh", "nuke", "nuke_plan", "tests", "bugs"):
        parameters = inspect.signature(getattr(tt, name)).parameters
        assert "self" not in parameters and "args" not in parameters, name
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name
    assert list(inspect.signature(tt.bugs).parameters)[:4] == [
        "product",
        "test",
        "status",
        "severity",
    ]
    assert "dry_run" in inspect.signature(tt.sync).parameters
    assert "confirm" in inspect.signature(tt.nuke).parameters
