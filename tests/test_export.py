"""The team's copy (``tt.export``): the mirror's tables in DuckDB and in a real PostgreSQL.

Oracles: the mirror's SQLite file read directly (row counts, values), the sandbox's own
``truth()`` and the changes the test made upstream; the destination is read with its own
driver (duckdb, psycopg2), never through the export code. Counts are dlt's (``rows``).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import testio_toolkit as tt
from testio_toolkit.errors import ConfigError, ExportError
from testio_toolkit.sandbox import Sandbox

from .conftest import cli, digest, make_mirror, table_rows
from .postgres_server import PostgresServer, available

# `tt.export` is the function; the module, by its full name.
export_module = importlib.import_module("testio_toolkit.export")

ENTITIES = ("products", "tests", "bugs", "features")
TABLES = (*ENTITIES, "changes")
# What each kind of column must be at each destination (information_schema's words).
TYPES = {
    "duckdb": {
        "int": "BIGINT",
        "bool": "BOOLEAN",
        "time": "TIMESTAMP WITH TIME ZONE",
        "text": "VARCHAR",
    },
    "postgres": {
        "int": "bigint",
        "bool": "boolean",
        "time": "timestamp with time zone",
        "text": "character varying",
    },
}
# The mirror's columns that go across and their kind (written here, not taken from export.py).
KINDS: dict[str, dict[str, str]] = {
    "products": {"id": "int", "name": "text", "type": "text", "description": "text",
                 "sectioned": "bool", "synced_at": "time", "deleted_upstream_at": "time"},
    "tests": {"id": "int", "product_id": "int", "title": "text", "status": "text",
              "testing_type": "text", "start_at": "time", "end_at": "time",
              "created_at": "time", "synced_at": "time", "deleted_upstream_at": "time"},
    "bugs": {"id": "int", "test_id": "int", "product_id": "int", "title": "text",
             "severity": "text", "status": "text", "known": "bool", "auto_accepted": "bool",
             "created_at": "time", "author": "text", "synced_at": "time",
             "deleted_upstream_at": "time"},
    "features": {"id": "int", "product_id": "int", "section_id": "int", "title": "text",
                 "description": "text", "howtofind": "text", "user_stories": "text",
                 "synced_at": "time", "deleted_upstream_at": "time"},
    "changes": {"id": "int", "run_id": "int", "mode": "text", "at": "time", "entity": "text",
                "entity_id": "int", "product_id": "int", "test_id": "int", "kind": "text",
                "field": "text", "old": "text", "new": "text"},
}  # fmt: skip


# -- destinations --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    why = available()
    if why is not None:
        pytest.skip(why)
    with PostgresServer() as server:
        yield server


class Destination:
    """One destination as the test reads it: with its own driver, not through the export."""

    def __init__(self, kind: str, spec: str, dataset: str, query: Callable[[str], list[Any]]):
        self.kind, self.spec, self.dataset, self._query = kind, spec, dataset, query

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._query(sql)

    def table(self, name: str) -> dict[int, dict[str, Any]]:
        columns = [c for c, _ in self.columns(name)]
        found = self.rows(f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} '
                          f"FROM {self.dataset}.{name}")  # fmt: skip
        return {row[0]: dict(zip(columns, row, strict=True)) for row in found}

    def count(self, name: str) -> int:
        return int(self.rows(f"SELECT count(*) FROM {self.dataset}.{name}")[0][0])

    def columns(self, name: str) -> list[tuple[str, str]]:
        return [
            (str(c), str(t))
            for c, t in self.rows(
                "SELECT column_name, data_type FROM information_schema.columns WHERE "
                f"table_schema = '{self.dataset}' AND table_name = '{name}' "
                "ORDER BY ordinal_position"
            )
        ]


def duckdb_destination(path: Path, dataset: str) -> Destination:
    import duckdb

    def query(sql: str) -> list[Any]:
        conn = duckdb.connect(str(path), read_only=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return Destination("duckdb", f"duckdb:{path}", dataset, query)


def postgres_destination(server: PostgresServer, dataset: str) -> Destination:
    def query(sql: str) -> list[Any]:
        conn = server.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            conn.close()

    return Destination("postgres", "postgres", dataset, query)


@pytest.fixture(params=["duckdb", "postgres"])
def destination(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Destination:
    dataset = "acct_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    if request.param == "duckdb":
        return duckdb_destination(tmp_path / "copy" / "team.duckdb", dataset)
    server: PostgresServer = request.getfixturevalue("postgres")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", server.url())
    return postgres_destination(server, dataset)


def export(mirror: tt.Mirror, dest: Destination, **options: Any) -> tt.ExportResult:
    (Path(dest.spec.removeprefix("duckdb:")).parent).mkdir(exist_ok=True)
    return mirror.export(dest.spec, dest.dataset, progress=False, **options)


# -- the mirror, read directly -------------------------------------------------------------


mirror_table = table_rows  # every row of a mirror table, keyed by id (conftest)


def as_exported(kind: str, value: Any) -> Any:
    """A mirror value as the destination must give it back."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "time":
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return value


def assert_copy_equals_mirror(
    dest: Destination,
    path: Path,
    tables: tuple[str, ...] = TABLES,
    *,
    first: bool = True,
    restored: bool = False,
) -> None:
    """Ids and a sample of values agree. After the first export, ``synced_at`` may be
    older in the copy: a row whose exported values did not change is not sent again (a
    bug's JSON carries its test's title, so retitling a test rewrites its bugs' rows in the
    mirror, and a nuke rewrites every row)."""
    for table in tables:
        mirror = mirror_table(path, table)
        copy = dest.table(table)
        assert set(copy) == set(mirror), f"{table}: other ids in the copy"
        sample = sorted(mirror)[::7] or sorted(mirror)
        for row_id in sample:
            for column, kind in KINDS[table].items():
                want = as_exported(kind, mirror[row_id][column])
                got = copy[row_id][column]
                if kind == "time" and got is not None:
                    got = got.astimezone(UTC)
                if column == "synced_at" and restored:
                    continue
                if column == "synced_at" and not first:
                    assert got <= want, f"{table} {row_id}: synced later in the copy"
                    continue
                assert got == want, f"{table} {row_id} {column}: {got!r} != {want!r}"


# -- first export, types -------------------------------------------------------------------


def test_first_export_equals_the_mirror_with_one_type_per_column(
    synced: tt.Mirror, sandbox: Sandbox, destination: Destination
) -> None:
    result = export(synced, destination)

    truth = sandbox.truth()
    counts = {t: len(mirror_table(synced.path, t)) for t in TABLES}
    assert counts["tests"] == len(truth.tests) and counts["bugs"] == len(truth.bugs)
    assert result.rows == counts  # what dlt reports it loaded
    assert {t: destination.count(t) for t in TABLES} == counts
    assert_copy_equals_mirror(destination, synced.path)
    expected = TYPES[destination.kind]
    for table in TABLES:
        types = dict(destination.columns(table))
        for column, kind in KINDS[table].items():
            assert types[column] == expected[kind], f"{table}.{column} is {types[column]}"
        assert "raw" not in types and "bugs_read_at" not in types  # only when asked / local
    assert "sync_runs" not in str(destination.rows(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = "
        f"'{destination.dataset}'"))  # fmt: skip
    live = destination.rows(f"SELECT count(*) FROM {destination.dataset}.live_tests")[0][0]
    assert live == counts["tests"]


def test_the_default_is_team_duckdb_beside_the_mirror_in_a_dataset_named_after_it(
    synced: tt.Mirror,
) -> None:
    result = synced.export(progress=False)

    copy = duckdb_destination(synced.path.with_name("team.duckdb"), "mirror")
    assert result.dataset == "mirror" and str(copy.spec.removeprefix("duckdb:")) in (
        result.destination
    )
    assert copy.count("tests") == len(mirror_table(synced.path, "tests"))
    assert "team.duckdb" in result._repr_html_() and "<table>" in result._repr_html_()


# -- incremental ---------------------------------------------------------------------------


def change_upstream(sb: Sandbox, fraction: float = 0.01) -> tuple[set[int], set[int]]:
    """Change ``fraction`` of the tests' and bugs' titles upstream; the ids changed."""
    truth = sb.truth()
    tests = sorted(truth.tests)[:: int(1 / fraction)]
    bugs = sorted(truth.bugs)[:: int(1 / fraction)]
    for test_id in tests:
        sb.update_test(test_id, title=f"retitled {test_id}")
    for bug_id in bugs:
        sb.update_bug(bug_id, title=f"retitled {bug_id}")
    return set(tests), set(bugs)


def last_change_id(path: Path) -> int:
    return max(mirror_table(path, "changes"), default=0)


def test_an_export_after_a_sync_moves_exactly_the_rows_it_changed(
    synced: tt.Mirror, sandbox: Sandbox, destination: Destination
) -> None:
    export(synced, destination)
    tests, bugs = change_upstream(sandbox)
    before = last_change_id(synced.path)
    assert synced.refresh().status == "success"
    new_changes = len([i for i in mirror_table(synced.path, "changes") if i > before])
    assert new_changes == len(tests) + len(bugs)  # one title change each

    result = export(synced, destination)

    assert result.rows == {
        "products": 0,
        "tests": len(tests),
        "bugs": len(bugs),
        "features": 0,
        "changes": new_changes,
    }
    assert_copy_equals_mirror(destination, synced.path, first=False)
    copied = destination.table("tests")
    assert all(copied[t]["title"] == f"retitled {t}" for t in tests)
    # The change feed was appended: every change once, the first export's rows kept.
    ids = [r[0] for r in destination.rows(f"SELECT id FROM {destination.dataset}.changes")]
    assert sorted(ids) == sorted(mirror_table(synced.path, "changes"))


def test_a_no_change_export_loads_nothing_after_a_refresh_and_after_a_nuke(
    synced: tt.Mirror, destination: Destination
) -> None:
    export(synced, destination)
    assert export(synced, destination).total == 0
    assert synced.refresh().status == "success"
    assert export(synced, destination).rows == dict.fromkeys(TABLES, 0)
    assert synced.nuke(confirm=True).status == "success"  # every row rewritten, none changed
    assert export(synced, destination).rows == dict.fromkeys(TABLES, 0)
    assert_copy_equals_mirror(destination, synced.path, ("tests", "bugs"), first=False)


def test_a_test_deleted_upstream_is_carried_as_deleted(
    synced: tt.Mirror, sandbox: Sandbox, destination: Destination
) -> None:
    export(synced, destination)
    truth = sandbox.truth()
    gone = sorted(truth.tests)[3]
    its_bugs = {b for b, bug in truth.bugs.items() if bug["test"]["id"] == gone}
    sandbox.delete_tests([gone])
    assert synced.refresh().status == "success"

    result = export(synced, destination)

    assert result.rows["tests"] == 1 and result.rows["bugs"] == len(its_bugs)
    copied = destination.table("tests")
    assert copied[gone]["deleted_upstream_at"] is not None
    assert len(copied) == len(truth.tests)  # kept, marked
    live = {r[0] for r in destination.rows(f"SELECT id FROM {destination.dataset}.live_tests")}
    assert live == set(truth.tests) - {gone}
    copied_bugs = destination.table("bugs")
    assert all(copied_bugs[b]["deleted_upstream_at"] is not None for b in its_bugs)


# -- another account, bad input -----------------------------------------------------------


def test_a_dataset_of_another_account_is_refused_and_nothing_changes(
    synced: tt.Mirror, destination: Destination, tmp_path: Path
) -> None:
    export(synced, destination)
    counts = {t: destination.count(t) for t in TABLES}
    with Sandbox(preset="small", seed=1, token="other-account-token-7d41") as other:
        assert not set(other.truth().products) & set(mirror_table(synced.path, "products"))
        intruder = make_mirror(other, tmp_path / "other.db")
        assert intruder.sync().status == "success"
        before = digest(intruder.path)
        with pytest.raises(ExportError, match="holds another account"):
            export(intruder, destination)
        assert digest(intruder.path) == before
        assert {t: destination.count(t) for t in TABLES} == counts
        # Under its own name it goes in.
        done = intruder.export(destination.spec, destination.dataset + "_b", progress=False)
        assert done.rows["tests"] == len(other.truth().tests)


def test_unknown_destinations_and_connection_strings_are_refused(synced: tt.Mirror) -> None:
    before = digest(synced.path)
    with pytest.raises(ConfigError, match="unknown destination 'warehouse9'"):
        synced.export("warehouse9", progress=False)
    with pytest.raises(ConfigError, match="not a connection string"):
        synced.export("postgresql://u:secret@127.0.0.1/db", progress=False)
    assert digest(synced.path) == before


@pytest.mark.parametrize("problem", ["wrong password", "unreachable", "no credentials"])
def test_a_postgres_that_refuses_or_is_not_there_fails_clearly_and_the_next_export_completes(
    synced: tt.Mirror,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
) -> None:
    bad = {
        "wrong password": (postgres.url(password="not-the-Pass-93"), "refused the user"),
        "unreachable": (postgres.url(port=_closed_port()), "cannot reach postgres"),
        "no credentials": (None, "no credentials for postgres"),
    }[problem]  # fmt: skip
    if bad[0] is None:
        monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    else:
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", bad[0])
    before = digest(synced.path)
    with pytest.raises((ExportError, ConfigError), match=bad[1]) as caught:
        synced.export("postgres", "bad_input", progress=False)
    assert "not-the-Pass-93" not in str(caught.value)
    assert digest(synced.path) == before

    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres.url())
    done = synced.export("postgres", "bad_input", progress=False)
    assert done.rows["tests"] == len(mirror_table(synced.path, "tests")) or done.total == 0
    copy = postgres_destination(postgres, "bad_input")
    assert copy.count("tests") == len(mirror_table(synced.path, "tests"))


def _closed_port() -> int:
    from .postgres_server import free_port

    return free_port()  # nothing listens there


def test_a_second_export_into_a_dataset_being_exported_is_refused(
    synced: tt.Mirror, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres.url())
    holder = postgres.connect()
    try:
        with holder.cursor() as cursor:  # what a running export holds
            key = export_module.row_hash(("testio-export", "busy"))
            cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
        with pytest.raises(ExportError, match="another export into dataset busy"):
            synced.export("postgres", "busy", progress=False)
    finally:
        holder.close()
    assert synced.export("postgres", "busy", progress=False).rows["tests"] > 0


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def test_a_full_disk_fails_clearly_the_mirror_is_untouched_and_the_next_export_completes(
    synced: tt.Mirror, tiny_mount: Path
) -> None:
    before = digest(synced.path)
    target = tiny_mount / "team.duckdb"
    filler = tiny_mount / "filler"
    with filler.open("wb") as handle:  # leave 64 KiB free
        handle.write(b"\0" * (8 * 1024 * 1024 - 64 * 1024))
    with pytest.raises(ExportError, match="is full"):
        synced.export(f"duckdb:{target}", "nospace", progress=False)
    assert digest(synced.path) == before

    filler.unlink()  # the user frees space
    synced.export(f"duckdb:{target}", "nospace", progress=False)
    copy = duckdb_destination(target, "nospace")
    for table in TABLES:
        assert copy.count(table) == len(mirror_table(synced.path, table))


# -- what must not leave: credentials, tester names ----------------------------------------

CREDENTIAL = "Stg-Pw-4f9e1d7c-zz"
LOGIN = "qa-login-83be61"


def with_environment_credentials(sb: Sandbox) -> None:
    """Give some tests a test environment with access credentials (as customers do)."""
    for test_id in sorted(sb.truth().tests)[:10]:
        sb.update_test(
            test_id,
            test_environment={
                "id": 7001,
                "title": "staging",
                "url": "https://staging.example.com",
                "access": {"username": LOGIN, "password": CREDENTIAL},
            },
        )


def every_value(dest: Destination) -> str:
    tables = [r[0] for r in dest.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        f"'{dest.dataset}'")]  # fmt: skip
    return "\n".join(repr(dest.rows(f"SELECT * FROM {dest.dataset}.{t}")) for t in tables)


def assert_no_credentials(dest: Destination, served: set[str]) -> None:
    """Neither the credentials put in by hand nor any the sandbox served (``served``) is
    in any value of the copy, nor (DuckDB) in any byte of its files."""
    text = every_value(dest)
    assert "tests" in text or text  # something was read
    needles = (CREDENTIAL, LOGIN, *sorted(served))
    assert len(needles) > 10, "the sandbox serves credentials in every environment"
    for needle in needles:
        assert needle not in text, f"{needle} reached {dest.kind}"
    if dest.kind == "duckdb":
        for path in Path(dest.spec.removeprefix("duckdb:")).parent.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for needle in needles:
                    assert needle.encode() not in data, path


def test_test_environment_credentials_never_reach_the_copy(
    sandbox: Sandbox, db_path: Path, destination: Destination
) -> None:
    with_environment_credentials(sandbox)
    mirror = make_mirror(sandbox, db_path)
    assert mirror.sync().status == "success"
    export(mirror, destination)
    assert destination.count("tests") == len(sandbox.truth().tests)
    assert_no_credentials(destination, sandbox.served_secrets())


def test_raw_goes_across_only_as_ingestion_redacted_it(
    sandbox: Sandbox, db_path: Path, tmp_path: Path
) -> None:
    with_environment_credentials(sandbox)
    mirror = make_mirror(sandbox, db_path)
    assert mirror.sync().status == "success"
    dest = duckdb_destination(tmp_path / "copy" / "team.duckdb", "raw_copy")
    result = export(mirror, dest, include_raw=True)
    assert result.rows["tests"] == len(sandbox.truth().tests)
    assert "raw" in dict(dest.columns("tests"))
    assert_no_credentials(dest, sandbox.served_secrets())


def test_pseudonymized_authors_are_stable_keyed_hashes(
    synced: tt.Mirror, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="TESTIO_PSEUDONYM_KEY"):
        synced.export(f"duckdb:{tmp_path / 'p.duckdb'}", "people", pseudonymize=True)
    key = "team-key-0123456789abcdef"
    monkeypatch.setenv("TESTIO_PSEUDONYM_KEY", key)
    synced.export(f"duckdb:{tmp_path / 'p.duckdb'}", "people", pseudonymize=True, progress=False)
    synced.export(f"duckdb:{tmp_path / 'q.duckdb'}", "people", pseudonymize=True, progress=False)

    mirror = mirror_table(synced.path, "bugs")
    for name in ("p", "q"):  # two exports, the same pseudonyms
        copy = duckdb_destination(tmp_path / f"{name}.duckdb", "people").table("bugs")
        for bug_id, row in mirror.items():
            expected = (
                "tester-"
                + hmac.new(key.encode(), row["author"].encode(), hashlib.sha256).hexdigest()[:12]
            )
            assert copy[bug_id]["author"] == expected
    names = {row["author"] for row in mirror.values()}
    text = every_value(duckdb_destination(tmp_path / "p.duckdb", "people"))
    assert not [n for n in names if f"'{n}'" in text]


# -- the extra, the CLI --------------------------------------------------------------------


def test_without_the_extra_the_error_names_it(
    synced: tt.Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dlt", None)  # import dlt -> ImportError
    assert not export_module.available()
    with pytest.raises(ExportError, match=r"testio-toolkit\[export\]"):
        synced.export(progress=False)


def test_the_cli_exports_and_a_second_run_moves_nothing(
    synced_env: dict[str, str], db_path: Path
) -> None:
    target = db_path.with_name("cli.duckdb")
    first = cli("export", "--to", f"duckdb:{target}", "--no-progress", env=synced_env)
    assert first.exit_code == 0, first.output
    tests = len(mirror_table(db_path, "tests"))
    assert f"tests {tests}" in first.output
    again = cli("export", "--to", f"duckdb:{target}", "--no-progress", env=synced_env)
    assert again.exit_code == 0 and "exported 0 rows" in again.output
    bad = cli("export", "--to", "postgresql://u:pw@host/db", env=synced_env)
    assert bad.exit_code == 2 and "pw@" not in bad.output


def test_the_panel_export_button_loads_the_copy_and_shows_the_result(synced: tt.Mirror) -> None:
    from testio_toolkit.widgets import Panel

    panel = Panel(synced)
    assert panel.export_button is not None and not panel.export_button.disabled
    panel.export_button.click()
    outcome = panel.wait()
    assert isinstance(outcome, tt.ExportResult), panel.error.value
    copy = duckdb_destination(synced.path.with_name("team.duckdb"), "mirror")
    assert copy.count("bugs") == len(mirror_table(synced.path, "bugs"))
    assert f"Exported {outcome.total} rows" in panel.summary.value
    assert not panel.export_button.disabled  # enabled again


def test_without_the_extra_the_panel_has_no_export_button(
    synced: tt.Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from testio_toolkit.widgets import Panel

    monkeypatch.setitem(sys.modules, "dlt", None)
    assert Panel(synced).export_button is None


# -- what the incremental read relies on ------------------------------------------------------


def test_a_product_gone_and_back_comes_back_live_in_the_copy(
    synced: tt.Mirror, sandbox: Sandbox, tmp_path: Path
) -> None:
    dest = duckdb_destination(tmp_path / "copy" / "team.duckdb", "back")
    export(synced, dest)
    product = sorted(sandbox.truth().products)[0]
    its_tests = set(sandbox.test_ids(product))
    sandbox.delete_product(product)
    assert synced.refresh().status == "success"
    gone = export(synced, dest)
    assert gone.rows["tests"] == len(its_tests)  # marked with their product
    sandbox.restore_product(product)
    assert synced.refresh().status == "success"  # unmarks them without restamping them

    back = export(synced, dest)

    assert back.rows["tests"] == len(its_tests) and back.rows["products"] == 1
    live = {r[0] for r in dest.rows("SELECT id FROM back.live_tests")}
    assert its_tests <= live
    assert_copy_equals_mirror(dest, synced.path, ENTITIES, first=False)


def test_after_a_restore_the_copy_follows_the_restored_mirror(
    synced: tt.Mirror, sandbox: Sandbox, tmp_path: Path
) -> None:
    dest = duckdb_destination(tmp_path / "copy" / "team.duckdb", "restored")
    tests, _ = change_upstream(sandbox)
    assert synced.nuke(confirm=True).status == "success"
    export(synced, dest)
    assert all(dest.table("tests")[t]["title"] == f"retitled {t}" for t in tests)
    synced.restore()  # the mirror before the nuke: the old titles, older stamps

    result = export(synced, dest)

    assert result.rows["tests"] == len(tests)
    assert_copy_equals_mirror(dest, synced.path, ENTITIES, restored=True)
    assert not any(dest.table("tests")[t]["title"] == f"retitled {t}" for t in tests)


def test_incremental_since_trusts_the_mark_only_for_the_same_file_history_and_options() -> None:
    mark = {"exported_through": "2025-06-02T12:00:00Z", "mirror": "salt", "options": "raw=0",
            "mirror_run_state": "success@2025-06-02T12:00:05Z", "through_closed": 1}  # fmt: skip
    same = {"mirror": "salt", "run_state": "success@2025-06-02T12:00:05Z", "options": "raw=0"}
    since = export_module.incremental_since
    assert since(mark, **same, earliest_new_run=None) == ("2025-06-02T12:00:00Z", False)
    assert since({**mark, "through_closed": 0}, **same, earliest_new_run=None) == (
        "2025-06-02T12:00:00Z",
        True,  # a run was going, or the export began in the stamp's second: read it again
    )
    assert since(mark, **same, earliest_new_run="2025-06-02T12:10:00Z") is not None
    assert since(None, **same, earliest_new_run=None) is None  # a new dataset
    assert since(mark, **{**same, "mirror": "other"}, earliest_new_run=None) is None
    assert since(mark, **{**same, "options": "raw=1"}, earliest_new_run=None) is None
    assert since(mark, **{**same, "run_state": "running@"}, earliest_new_run=None) is None
    assert since(mark, **same, earliest_new_run="2025-06-02T11:00:00Z") is None  # clock back
    assert since(mark, **same, earliest_new_run="2025-06-02T12:00:00Z") is None  # same second


def test_a_no_change_export_reads_only_what_is_new(
    synced: tt.Mirror, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = duckdb_destination(tmp_path / "copy" / "team.duckdb", "reads")
    export(synced, dest)
    read: list[dict[str, int]] = []
    real = export_module.read_mirror

    def counting(*args: Any, **kwargs: Any) -> Any:
        snapshot = real(*args, **kwargs)
        read.append({t: len(snapshot.rows[t]) for t in ENTITIES})
        return snapshot

    monkeypatch.setattr(export_module, "read_mirror", counting)
    assert export(synced, dest).total == 0
    tests, bugs = change_upstream(sandbox)
    assert synced.refresh().status == "success"
    assert export(synced, dest).rows["tests"] == len(tests)
    # Nothing was stamped since the first export; the refresh stamped the changed tests and
    # the bugs whose JSON changed (their own titles, or their test's).
    assert read[0] == dict.fromkeys(ENTITIES, 0)
    assert read[1]["tests"] == len(tests) and read[1]["products"] == 0
    assert len(bugs) <= read[1]["bugs"] < len(mirror_table(synced.path, "bugs"))


def test_progress_shows_dlt_bars_while_loading_and_nothing_without(
    synced: tt.Mirror, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    synced.export(f"duckdb:{tmp_path / 'q.duckdb'}", "quiet", progress=False)
    assert "Jobs" not in capfd.readouterr().err
    synced.export(f"duckdb:{tmp_path / 's.duckdb'}", "shown", progress=True)
    shown = capfd.readouterr().err
    assert "Load" in shown and "Jobs" in shown and "100%" in shown
