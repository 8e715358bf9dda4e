"""tt.portfolio: frames across accounts, read-only, one mirror at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import testio_toolkit as tt
from testio_toolkit import accounts
from testio_toolkit.errors import StoreError
from testio_toolkit.sandbox import SandboxCustomers

from .conftest import FAST, digest


@pytest.fixture
def synced_customers(keyring_dir: Path) -> Iterator[SandboxCustomers]:
    with SandboxCustomers() as customers:
        for name, sb in customers.sandboxes.items():
            accounts.add(name, sb.token, url=sb.url)
        assert tt.sync_all(client_options=FAST).ok
        yield customers


def test_frames_carry_the_account_and_hold_each_accounts_own_rows(
    synced_customers: SandboxCustomers,
) -> None:
    bugs = tt.portfolio.bugs()
    tests = tt.portfolio.tests()
    products = tt.portfolio.products()

    for name, sb in synced_customers.sandboxes.items():
        truth = sb.truth()
        assert set(bugs.loc[bugs["account"] == name, "id"]) == set(truth.bugs)
        assert set(tests.loc[tests["account"] == name, "id"]) == set(truth.tests)
        assert set(products.loc[products["account"] == name, "id"]) == set(truth.products)
    assert list(bugs.columns[:2]) == ["account", "id"]
    assert str(bugs["account"].dtype) == "category"
    assert len(tt.portfolio.runs()) == 3
    assert set(tt.portfolio.changes(since=None)["account"]) == set(synced_customers.names())
    # Filters are the one-account frames' own.
    critical = tt.portfolio.bugs(severity="critical", accounts=["acme", "globex"])
    expected = sum(
        1
        for name in ("acme", "globex")
        for bug in synced_customers[name].truth().bugs.values()
        if bug["severity"] == "critical"
    )
    assert len(critical) == expected and set(critical["account"]) <= {"acme", "globex"}


def test_a_grouped_count_in_sql_on_every_mirror(synced_customers: SandboxCustomers) -> None:
    answer = tt.portfolio.query("SELECT severity, count(*) AS n FROM bugs GROUP BY severity")

    for name, sb in synced_customers.sandboxes.items():
        expected = Counter(bug["severity"] for bug in sb.truth().bugs.values())
        mine = answer[answer["account"] == name]
        assert dict(zip(mine["severity"], mine["n"], strict=True)) == dict(expected)


def test_health_across_accounts_counts_each_accounts_own_bugs(
    synced_customers: SandboxCustomers,
) -> None:
    health = tt.portfolio.health(period=None)  # one row an account
    rows = {str(r.account): r for r in health.itertuples()}
    assert set(rows) == set(synced_customers.names())
    for name, sb in synced_customers.sandboxes.items():
        served = sb.truth().bugs.values()
        assert rows[name].bugs == len(served)
        assert rows[name].rejected == sum(b["status"] == "rejected" for b in served)
    assert "background-color" in health._repr_html_()  # coloured by the thresholds


def test_it_reads_only_and_names_accounts_not_synced_yet(
    synced_customers: SandboxCustomers,
) -> None:
    before = {name: digest(accounts.default_db_path(name)) for name in synced_customers.names()}
    with pytest.raises(StoreError):
        tt.portfolio.query("DELETE FROM bugs")
    assert {n: digest(accounts.default_db_path(n)) for n in synced_customers.names()} == before

    accounts.add("newco", "sandbox-token-newco", url=synced_customers["acme"].url)
    frame = tt.portfolio.bugs()
    assert frame.attrs["not_synced"] == ["newco"]
    overview = tt.portfolio.accounts().set_index("account")
    assert pd.isna(overview.loc["newco", "last_run"])
    assert overview.loc["acme", "last_status"] == "success"
    assert overview.loc["acme", "size_mb"] > 0


def test_thirty_accounts_answer_a_grouped_count_over_all_their_bugs(keyring_dir: Path) -> None:
    from testio_toolkit.sandbox.customers import TINY

    with SandboxCustomers.numbered(30, TINY) as customers:
        for name, sb in customers.sandboxes.items():
            accounts.add(name, sb.token, url=sb.url)
        assert tt.sync_all(client_options=FAST, at_once=6).ok
        expected = {
            name: Counter(bug["status"] for bug in sb.truth().bugs.values())
            for name, sb in customers.sandboxes.items()
        }

    answer = tt.portfolio.query("SELECT status, count(*) AS n FROM bugs GROUP BY status")

    assert answer["account"].nunique() == 30
    got = {
        name: dict(zip(group["status"], group["n"], strict=True))
        for name, group in answer.groupby("account", observed=True)
    }
    assert got == {name: dict(counts) for name, counts in expected.items()}
