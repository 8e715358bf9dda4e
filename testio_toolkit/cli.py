"""The command line: a thin face over the same calls a notebook makes.

Usage::

    testio-toolkit sync                 # incremental
    testio-toolkit sync --force         # full, non-destructive refresh
    testio-toolkit sync --nuke          # confirmed rebuild, keeps a backup
    testio-toolkit sync --nuke --dry-run   # the plan only: tt.nuke_plan()
    testio-toolkit status
    testio-toolkit changes --since 7d --format csv   # what the runs changed
    testio-toolkit export --to postgres              # the team's copy (testio-toolkit[export])
    testio-toolkit restore
    testio-toolkit problematic list|retry|clear
    testio-toolkit sandbox --preset small --port 8765   # = python -m testio_toolkit.sandbox

Exit codes: 0 success, 1 failed or partial, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import accounts, api, batch, portfolio
from .errors import Cancelled, ConfigError, ToolkitError
from .results import SyncResult, format_table
from .sandbox.command import sandbox
from .vocabulary import CONFIRM_WORD, ChangeKind, Entity

if TYPE_CHECKING:
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(exc: BaseException, code: int = 1) -> NoReturn:
    click.echo(f"{type(exc).__name__}: {exc}", err=True)
    sys.exit(code)


def _mirror(ctx: click.Context) -> api.Mirror:
    # --db, --base-url, --account, --wait and --keep-backups work before the command and
    # after it (`testio-toolkit --db x.db sync` and `testio-toolkit sync --db x.db`); after
    # wins.
    options = _given(ctx)
    mirror = api.Mirror(
        options.get("db"),
        base_url=options.get("base_url"),
        wait=options.get("wait") or False,
        keep_backups=options.get("keep_backups") or 1,
        account=options.get("account"),
    )
    # Messages name the option a value came from; environment and .env values are found
    # (and named) by Settings itself, so they are not passed as options.
    given = {"db_path": "--db", "base_url": "--base-url"}
    origins = dict(mirror.settings.origins)
    for name, option in given.items():
        if origins.get(name, "").endswith(" argument"):
            origins[name] = option
    mirror.settings = mirror.settings.with_(origins=origins)
    return mirror


def _given(ctx: click.Context) -> dict[str, Any]:
    """The shared options, from the root and every command on the way (the last wins)."""
    options = dict(ctx.find_root().params)
    chain = []
    while ctx.parent is not None:
        chain.append(ctx)
        ctx = ctx.parent
    for each in reversed(chain):
        for name, value in each.params.items():
            if name in _SHARED and value not in (None, False):
                options[name] = value
    return options


_SHARED = ("db", "base_url", "account", "wait", "keep_backups")


def _options(*, write: bool = False, backups: bool = False) -> Callable[[F], F]:
    """The root's --db, --base-url and --account, also on a subcommand; --wait on those that
    write, --keep-backups on those that make or use backups."""

    def decorate(func: F) -> F:
        if backups:
            func = click.option(
                "--keep-backups",
                type=click.IntRange(min=1),
                default=None,
                help="How many pre-nuke backups to keep beside the database (default 1).",
            )(func)
        if write:
            func = click.option(
                "--wait", is_flag=True, help="Wait for a running sync instead of failing at once."
            )(func)
        func = click.option(
            "--account", help="A named account (testio-toolkit account list; TESTIO_ACCOUNT)."
        )(func)
        func = click.option(
            "--base-url", help="API base URL (default: TESTIO_CUSTOMER_API_BASE_URL)."
        )(func)
        func = click.option(
            "--db", help="The mirror database (default: TESTIO_DB_PATH or the per-user folder)."
        )(func)
        return func

    return decorate


def _progress_shown(no_progress: bool) -> bool:
    """Progress bars only on a terminal: a log file gets no escape codes."""
    return not no_progress and sys.stderr.isatty()


def _guarded(func: F) -> F:
    """Turn toolkit errors into a message and an exit code, at the edge."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (Cancelled, KeyboardInterrupt):
            click.echo(
                "Interrupted: the mirror is consistent; the run is marked cancelled.", err=True
            )
            sys.exit(EXIT_INTERRUPTED)
        except ConfigError as exc:
            _fail(exc, EXIT_USAGE)
        except ToolkitError as exc:
            _fail(exc)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


def _print_result(result: SyncResult) -> None:
    click.echo(format_table(result.table()))
    click.echo(result.headline())
    click.echo(f"changes: {result.change_line}")
    for report in result.products:
        if report.error:
            click.echo(f"  product {report.product_id}: {report.error}", err=True)
    if result.backup_path:
        click.echo(f"Previous database kept as {result.backup_path} (testio-toolkit restore)")
    if advice := result.advice(cli=True):
        click.echo(advice, err=True)
    if not result.ok:
        sys.exit(EXIT_PARTIAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# No envvar= here: Settings reads TESTIO_DB_PATH and TESTIO_CUSTOMER_API_BASE_URL (and the
# .env file) itself, so that a bad value is reported under its own name, not as --db.
@click.option(
    "--db",
    help="The mirror database (default: TESTIO_DB_PATH or the per-user data folder).",
)
@click.option(
    "--base-url",
    help="API base URL, path prefix included (default: TESTIO_CUSTOMER_API_BASE_URL).",
)
@click.option("--account", help="A named account (testio-toolkit account list; TESTIO_ACCOUNT).")
@click.option("--wait", is_flag=True, help="Wait for a running sync instead of failing at once.")
@click.option(
    "--keep-backups",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many pre-nuke backups to keep beside the database.",
)
@click.version_option(package_name="testio-toolkit")
def cli(
    db: str | None, base_url: str | None, account: str | None, wait: bool, keep_backups: int
) -> None:
    """Mirror a TestIO account into SQLite.

    The token comes from a named account (testio-toolkit account add NAME: the OS keyring),
    or TESTIO_CUSTOMER_API_TOKEN (or a .env file), never from the command line. Without a
    token, everything runs against the bundled sandbox.

    Example: testio-toolkit sync --since 30d
    """


@cli.command()
@click.option("--force", is_flag=True, help="Full, non-destructive refresh of everything.")
@click.option("--nuke", is_flag=True, help="Delete the mirror and rebuild it (asks first).")
@click.option("--yes", "-y", is_flag=True, help="With --nuke: do not ask for confirmation.")
@click.option(
    "--product",
    "-p",
    "products",
    multiple=True,
    help="Limit to this product, by id or name (repeatable).",
)
@click.option("--since", help="Only tests that ended on or after: 2025-01-31, 30d, 2w.")
@click.option("--dry-run", is_flag=True, help="Read everything, write nothing, report.")
@click.option("--no-progress", is_flag=True, help="No progress bars (none without a terminal).")
@click.option(
    "--all", "every", is_flag=True, help="Every named account, a few at a time (never --nuke)."
)
@click.option(
    "--at-once",
    type=click.IntRange(min=1),
    default=None,
    help="With --all: accounts run at the same time (default TESTIO_ACCOUNTS_AT_ONCE or 4).",
)
@_options(write=True, backups=True)
@click.pass_context
@_guarded
def sync(
    ctx: click.Context,
    /,
    force: bool,
    nuke: bool,
    yes: bool,
    products: tuple[str, ...],
    since: str | None,
    dry_run: bool,
    no_progress: bool,
    every: bool,
    at_once: int | None,
    **shared: Any,
) -> None:
    """Bring the mirror up to date.

    \b
    sync            incremental: new tests, tests that can still change, their bugs
    sync --force    re-read everything and upsert it; keeps the database, local columns,
                    tables and history; marks rows gone upstream instead of deleting them
    sync --nuke     throw the mirror away and rebuild it from scratch; the old database
                    is kept as a backup (testio-toolkit restore); with --dry-run: only
                    the plan (tt.nuke_plan())
    sync --all      every named account (--force: refresh each); a summary table

    Example: testio-toolkit sync --force --product 12 --since 30d
    """
    if force and nuke:
        raise click.UsageError("--force and --nuke cannot be used together")
    if every:
        _sync_all(ctx, force=force, nuke=nuke, products=products, dry_run=dry_run, at_once=at_once)
        return
    if at_once is not None:
        raise click.UsageError("--at-once only goes with --all")
    if yes and not nuke:
        raise click.UsageError("--yes only goes with --nuke")
    if nuke and since:
        raise click.UsageError("--since does not go with --nuke: a nuke rebuilds everything")
    mirror = _mirror(ctx)
    progress = _progress_shown(no_progress)
    if mirror.sandbox:
        click.echo(
            "No TESTIO_CUSTOMER_API_TOKEN: using the bundled SANDBOX (sample data).", err=True
        )
    if nuke:
        _nuke(mirror, products, yes=yes, dry_run=dry_run, progress=progress)
        return
    run = mirror.refresh if force else mirror.sync
    _print_result(run(products or None, since, dry_run=dry_run, progress=progress))


def _sync_all(
    ctx: click.Context,
    *,
    force: bool,
    nuke: bool,
    products: tuple[str, ...],
    dry_run: bool,
    at_once: int | None,
) -> None:
    """`sync --all`: every account, progress per account on stderr, the table on stdout."""
    if nuke:
        raise click.UsageError("--all does not go with --nuke: nuke one account at a time")
    if products or dry_run:
        raise click.UsageError("--all does not go with --product or --dry-run")
    given = _given(ctx)
    if given.get("db") or given.get("account") or given.get("base_url"):
        raise click.UsageError("--all does not go with --db, --base-url or --account")
    result = batch.sync_all(
        refresh=force,
        at_once=at_once,
        wait=bool(given.get("wait")),
        on_start=lambda name: click.echo(f"{name}: started", err=True),
        on_done=lambda outcome: click.echo(outcome.line(), err=True),
    )
    click.echo(result.text())
    if not result.ok:
        for outcome in result.failed:
            click.echo(f"  {outcome.account} {outcome.status}: {outcome.error}", err=True)
        sys.exit(EXIT_PARTIAL)


def _nuke(
    mirror: api.Mirror, products: tuple[str, ...], *, yes: bool, dry_run: bool, progress: bool
) -> None:
    plan = mirror.nuke_plan(products or None)  # reads only
    if dry_run:
        click.echo("\n".join(plan.lines()))
        return
    if not yes:
        if not sys.stdin.isatty():
            click.echo("\n".join(plan.lines()), err=True)
            click.echo(
                "Refusing to nuke without confirmation: no terminal to ask on. "
                "Pass --yes to confirm.",
                err=True,
            )
            sys.exit(EXIT_PARTIAL)
        click.echo("\n".join(plan.lines()[:-1]))
        answer = click.prompt(
            f"Type '{CONFIRM_WORD}' to delete and rebuild", default="", show_default=False
        )
        if answer.strip() != CONFIRM_WORD:
            click.echo("Not confirmed; nothing changed.")
            sys.exit(EXIT_PARTIAL)
    _print_result(mirror.nuke(products or None, confirm=True, progress=progress))


@cli.command()
@_options()
@click.pass_context
@_guarded
def status(ctx: click.Context, /, **shared: Any) -> None:
    """Show what the mirror holds and when each mode last ran. Writes nothing.

    Example: testio-toolkit status
    """
    click.echo("\n".join(_mirror(ctx).status().lines()))


@cli.command()
@_options(write=True, backups=True)
@click.pass_context
@_guarded
def restore(ctx: click.Context, /, **shared: Any) -> None:
    """Bring back the database a nuke replaced (the newest backup).

    Example: testio-toolkit restore
    """
    restored = _mirror(ctx).restore()
    click.echo(f"Restored {restored.name}; the replaced database is kept as a backup.")


@cli.command()
@_options(write=True)
@click.pass_context
@_guarded
def scrub(ctx: click.Context, /, **shared: Any) -> None:
    """Remove customers' test-environment credentials from the mirror and its backups.

    Every run does this once by itself for a mirror made by an older version; run it again
    for a backup that could not be written then (it is named in that run's output).

    Example: testio-toolkit scrub
    """
    report = _mirror(ctx).scrub()
    click.echo(report.line() if report else "No stored credentials: nothing to remove.")
    if report and report.problems:
        ctx.exit(1)


@cli.command()
@click.option(
    "--since", default="7d", show_default=True, help="Changes recorded since: 30d, 2025-01-31, all."
)
@click.option(
    "--product",
    "-p",
    "products",
    multiple=True,
    help="Only this product, by id or name (repeatable).",
)
@click.option(
    "--entity",
    type=click.Choice([e.value for e in Entity]),
    multiple=True,
    help="Only changes of this kind of record (repeatable).",
)
@click.option(
    "--kind",
    type=click.Choice([k.value for k in ChangeKind]),
    multiple=True,
    help="Only records added, changed, gone or returned (repeatable).",
)
@click.option("--run", "runs", type=int, multiple=True, help="Only this run's changes (tt.runs()).")
@click.option(
    "--format",
    "shape",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="csv and json: one row per change, the columns of tt.changes(), for scripts.",
)
@_options()
@click.pass_context
@_guarded
def changes(
    ctx: click.Context,
    /,
    since: str,
    products: tuple[str, ...],
    entity: tuple[str, ...],
    kind: tuple[str, ...],
    runs: tuple[int, ...],
    shape: str,
    **shared: Any,
) -> None:
    """Show what the runs changed: records added, fields changed, records gone and back.
    Reads only.

    Example: testio-toolkit changes --since 30d --entity bug --format csv
    """
    frame = _mirror(ctx).changes(
        since=None if since == "all" else since,
        product=list(products) or None,
        entity=list(entity) or None,
        kind=list(kind) or None,
        run=list(runs) or None,
    )
    _emit(frame, shape, f"No changes recorded since {since}.", _change_table)


def _emit(
    frame: pd.DataFrame,
    shape: str,
    empty: str,
    table: Callable[[list[dict[str, Any]]], list[list[str]]] | None = None,
) -> None:
    """A frame as json (a list of objects), csv (its columns) or a terminal table
    (``table`` picks the columns; default: every column, cut to fit)."""
    import pandas as pd

    rows = _plain_rows(frame)
    if shape == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    elif shape == "csv":
        flat = [{k: _csv_cell(v) for k, v in row.items()} for row in rows]
        csv = pd.DataFrame(flat, columns=[str(c) for c in frame.columns]).to_csv(index=False)
        click.echo(csv, nl=False)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(format_table((table or _plain_table)(rows)))


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def _plain_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    names = list(rows[0])
    return [names] + [[_cell(row[n]) for n in names] for row in rows]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)[:30]


@cli.command()
@click.option(
    "--to",
    "destination",
    default="duckdb",
    show_default=True,
    help="duckdb (team.duckdb beside the mirror), duckdb:PATH, postgres, or another dlt "
    "destination's name; credentials come from dlt's config (DESTINATION__POSTGRES__"
    "CREDENTIALS or .dlt/secrets.toml), never from here.",
)
@click.option("--raw", "include_raw", is_flag=True, help="Also the service's (redacted) JSON.")
@click.option(
    "--local", "include_local", is_flag=True, help="Also the run history and unreadable log."
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Bug authors as stable pseudonyms, keyed by TESTIO_PSEUDONYM_KEY.",
)
@click.option("--no-progress", is_flag=True, help="No progress display.")
@_options()
@click.pass_context
@_guarded
def export(
    ctx: click.Context,
    /,
    destination: str,
    include_raw: bool,
    include_local: bool,
    pseudonymize: bool,
    no_progress: bool,
    **shared: Any,
) -> None:
    """Load the mirror into DuckDB, Postgres or a warehouse through dlt (the team's copy);
    only what changed since the last export moves. Needs testio-toolkit[export]. The
    dataset (schema) is the account's name (--account), else the mirror file's name.

    Example: testio-toolkit export --to postgres --account acme
    """
    result = _mirror(ctx).export(
        destination,
        None,
        include_raw=include_raw,
        include_local=include_local,
        pseudonymize=pseudonymize,
        progress=_progress_shown(no_progress),
    )
    click.echo("\n".join(result.lines()))


def _plain_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as plain Python values (times as UTC ISO text, NA as None, lists
    and dicts kept)."""
    import pandas as pd

    out = []
    for record in pd.DataFrame(frame).to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            name = str(key)
            if isinstance(value, list | dict):
                row[name] = value
            elif value is None or (not isinstance(value, str) and value != value):  # NaN, NA
                row[name] = None
            elif isinstance(value, pd.Timestamp):
                row[name] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif hasattr(value, "item"):  # numpy scalars
                row[name] = value.item()
            else:
                row[name] = value if isinstance(value, int | float | str) else str(value)
        out.append(row)
    return out


def _change_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    body = [["at", "run", "entity", "id", "kind", "field", "old -> new", "product", "title"]]
    for row in rows:
        change = f"{row['old']} -> {row['new']}" if row["kind"] == ChangeKind.CHANGED else ""
        body.append(
            [
                row["at"],
                str(row["run_id"]),
                str(row["entity"]),
                str(row["entity_id"]),
                str(row["kind"]),
                row["field"] or "",
                change[:50],
                (row["product"] or "")[:24],
                (row["title"] or "")[:40],
            ]
        )
    return body


_FORMAT = click.option(
    "--format",
    "shape",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="csv and json: every column of the frame, for scripts.",
)
_PRODUCTS = click.option(
    "--product",
    "-p",
    "products",
    multiple=True,
    help="Only this product, by id or name (repeatable).",
)
_TIMES = "2026-03-01, 2026-07 (a month), 2026-Q3, 30d, 3mo"


def _since_until(column: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--until", help=f"Only {column} before: {_TIMES} (all of it).")(
            command
        )
        return click.option("--since", help=f"Only {column} from: {_TIMES}.")(command)

    return add


_TEST_COLUMNS = ["id", "product", "title", "status", "testing_type", "end_at", "bugs"]
_BUG_COLUMNS = ["id", "product", "test_title", "severity", "status", "created_at", "title"]


def _columns(names: list[str]) -> Callable[[list[dict[str, Any]]], list[list[str]]]:
    def table(rows: list[dict[str, Any]]) -> list[list[str]]:
        return [names] + [[_cell(row[n]) for n in names] for row in rows]

    return table


@cli.command()
@_PRODUCTS
@click.option("--status", multiple=True, help="Only tests with this status (repeatable).")
@_since_until("tests that end")
@_FORMAT
@_options()
@click.pass_context
@_guarded
def tests(
    ctx: click.Context,
    /,
    products: tuple[str, ...],
    status: tuple[str, ...],
    since: str | None,
    until: str | None,
    shape: str,
    **shared: Any,
) -> None:
    """List the mirror's tests (tt.tests()); --since/--until filter end_at. Reads only.

    Example: testio-toolkit tests --product 12 --since 2026-Q3 --format csv
    """
    frame = _mirror(ctx).tests(list(products) or None, list(status) or None, since, until=until)
    _emit(frame, shape, "No tests match.", _columns(_TEST_COLUMNS))


@cli.command()
@_PRODUCTS
@click.option("--test", "-t", "tests_", multiple=True, help="Only this test, by id or title.")
@click.option("--status", multiple=True, help="Only bugs with this status (repeatable).")
@click.option("--severity", multiple=True, help="Only bugs of this severity (repeatable).")
@_since_until("bugs reported")
@_FORMAT
@_options()
@click.pass_context
@_guarded
def bugs(
    ctx: click.Context,
    /,
    products: tuple[str, ...],
    tests_: tuple[str, ...],
    status: tuple[str, ...],
    severity: tuple[str, ...],
    since: str | None,
    until: str | None,
    shape: str,
    **shared: Any,
) -> None:
    """List the mirror's bugs (tt.bugs()); --since/--until filter created_at. Reads only.

    Example: testio-toolkit bugs --severity critical --since 30d --format json
    """
    frame = _mirror(ctx).bugs(
        list(products) or None,
        list(tests_) or None,
        list(status) or None,
        list(severity) or None,
        since,
        until=until,
    )
    _emit(frame, shape, "No bugs match.", _columns(_BUG_COLUMNS))


@cli.command()
@click.option(
    "--by",
    "by",
    multiple=True,
    type=click.Choice(["product", "feature", "test", "account"]),
    help="Group by (repeatable); none: the whole mirror.",
)
@click.option(
    "--period",
    type=click.Choice(["week", "month", "quarter", "none"]),
    default="month",
    show_default=True,
)
@_PRODUCTS
@_since_until("bugs reported and tests that end")
@_FORMAT
@_options()
@click.pass_context
@_guarded
def health(
    ctx: click.Context,
    /,
    by: tuple[str, ...],
    period: str,
    products: tuple[str, ...],
    since: str | None,
    until: str | None,
    shape: str,
    **shared: Any,
) -> None:
    """Health measures per group and period (tt.health(); formulas in the README).
    Reads only.

    Example: testio-toolkit health --by product --period quarter --since 2026-Q1
    """
    frame = _mirror(ctx).health(
        list(by) or None,
        None if period == "none" else period,
        list(products) or None,
        since,
        until=until,
    )
    import pandas as pd

    grades = frame.grades()
    shown = pd.DataFrame(frame)
    for rate in grades.columns:
        shown[f"{rate}_grade"] = grades[rate]
    _emit(shown, shape, "Nothing to measure: no bugs or tests match.")


@cli.group()
def problematic() -> None:
    """Records the service could not serve: list, retry or clear them.

    Example: testio-toolkit problematic retry
    """


@problematic.command("list")
@_options()
@click.pass_context
@_guarded
def problematic_list(ctx: click.Context, /, **shared: Any) -> None:
    """List unreadable records waiting for a retry.

    Example: testio-toolkit problematic list
    """
    frame = _mirror(ctx).unreadable()
    if frame.empty:
        click.echo("No unreadable records.")
        return
    columns = [
        "id",
        "product_id",
        "kind",
        "position",
        "record_id",
        "prev_id",
        "next_id",
        "attempts",
        "first_seen_at",
    ]
    click.echo(frame[columns].to_string(index=False))


@problematic.command("retry")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@_options(write=True)
@click.pass_context
@_guarded
def problematic_retry(ctx: click.Context, /, no_progress: bool, **shared: Any) -> None:
    """Read the products with unreadable records again; resolve what now reads.

    Example: testio-toolkit problematic retry
    """
    result = _mirror(ctx).retry_unreadable(progress=_progress_shown(no_progress))
    if result is None:
        click.echo("No unreadable records to retry.")
        return
    _print_result(result)


@problematic.command("clear")
@click.option(
    "--product",
    "-p",
    "products",
    type=int,
    multiple=True,
    help="Only this product's entries (repeatable).",
)
@_options(write=True)
@click.pass_context
@_guarded
def problematic_clear(ctx: click.Context, /, products: tuple[int, ...], **shared: Any) -> None:
    """Forget unreadable-record entries.

    Example: testio-toolkit problematic clear --product 12
    """
    cleared = _mirror(ctx).clear_unreadable(products or None)
    click.echo(f"Cleared {cleared} entries.")


@cli.group("account")
def account_group() -> None:
    """Named accounts: one per customer, its token in the OS keyring, its own mirror.

    Example: testio-toolkit account add acme --url https://api.test.io/customer/v2
    """


@account_group.command("add")
@click.argument("name")
@click.option("--url", help="The account's API base URL (default: the TestIO service).")
@click.option("--db", help="Its mirror (default: accounts/NAME.db in the per-user data folder).")
@click.option(
    "--product", "-p", "products", type=int, multiple=True, help="Default product filter."
)
@click.option("--keep-changes", help="How long its change feed keeps rows: 365d, 52w, all.")
@click.option(
    "--insecure-storage",
    is_flag=True,
    help="No keyring here: keep the token in a file only you may read (mode 0600).",
)
@_guarded
def account_add(
    name: str,
    url: str | None,
    db: str | None,
    products: tuple[int, ...],
    keep_changes: str | None,
    insecure_storage: bool,
) -> None:
    """Add an account (or replace its token and settings). The token is asked for without
    echo, or read from standard input when that is not a terminal; one request checks it.

    Example: testio-toolkit account add acme --url https://api.test.io/customer/v2
    """
    accounts.check_name(name)
    if sys.stdin.isatty():
        token = click.prompt(
            f"API token of {name}", hide_input=True, default="", show_default=False
        )
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise ConfigError(f"no token given for account {name!r} (type it, or pipe it in)")
    seen = api.products_seen(token, url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        added = accounts.add(
            name,
            token,
            url=url,
            db_path=db,
            products=products or None,
            keep_changes=keep_changes,
            insecure_storage=insecure_storage,
        )
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    where = "a 0600 file (--insecure-storage)" if added.token_file else "the keyring"
    click.echo(f"Account {name}: token accepted at {added.base_url}, kept in {where}.")
    click.echo(f"Mirror: {added.db_path}")
    click.echo(
        f"{len(seen)} products: " + ", ".join(f"{p['id']} {p.get('name', '')}" for p in seen)
    )


@account_group.command("list")
@_guarded
def account_list() -> None:
    """The accounts: name (* the default), URL, token source, mirror, size, last run.

    Example: testio-toolkit account list
    """
    rows = portfolio.overview()
    if not rows:
        click.echo(f"No accounts yet ({accounts.accounts_file()}): testio-toolkit account add NAME")
        return
    body = [["account", "url", "token", "mirror", "size", "last run"]]
    for row in rows:
        body.append(
            [
                ("* " if row["default"] else "  ") + row["account"],
                row["url"],
                f"{row['token']} {row['token_end']}".strip(),
                row["db_path"],
                f"{row['size_mb']:.1f} MB",
                f"{row['last_run']} ({row['last_status']})" if row["last_run"] else "never",
            ]
        )
    click.echo(format_table(body))


@account_group.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--delete-mirror", is_flag=True, help="Delete its mirror file too.")
@_guarded
def account_remove(name: str, yes: bool, delete_mirror: bool) -> None:
    """Forget an account's token and settings; its mirror is kept unless --delete-mirror.

    Example: testio-toolkit account remove acme
    """
    found = accounts.load().get(name)
    kept = "and DELETE its mirror" if delete_mirror else f"(its mirror {found.db_path} is kept)"
    if not yes:
        if not sys.stdin.isatty():
            click.echo(f"Refusing to remove {name} without --yes: no terminal to ask on.", err=True)
            sys.exit(EXIT_PARTIAL)
        if not click.confirm(f"Remove account {name}'s token and settings {kept}?"):
            click.echo("Not removed.")
            sys.exit(EXIT_PARTIAL)
    accounts.remove(name, delete_mirror=delete_mirror)
    click.echo(f"Removed account {name} {kept}.")


@account_group.command("default")
@click.argument("name")
@_guarded
def account_default(name: str) -> None:
    """Use this account when none is named (no --account, no TESTIO_ACCOUNT, no token set).

    Example: testio-toolkit account default acme
    """
    accounts.set_default(name)
    click.echo(f"Default account: {name}")


cli.add_command(sandbox)


def main() -> None:
    """Entry point of the ``testio-toolkit`` console script."""
    cli(prog_name="testio-toolkit")
