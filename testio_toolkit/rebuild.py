"""Where a run writes: the mirror itself, or a nuke's rebuild that is swapped in as it ends.

Every mode runs the same way (``api.AsyncMirror._run``): lock, leftovers, client, products,
account, then a ``Target`` to write into, then ``sync.run_plan``. This module makes the
targets:

- ``live(path, check_account, dry_run=...)``: a sync or refresh writes into the mirror (a
  dry run into a scratch copy of it, ``Store.open_dry_run``);
- ``rebuilding(path, products, check_account, keep_backups=...)``: a nuke writes into a
  build file beside the mirror. The whole mirror: a fresh file, swapped in with a backup
  (``backups.swap_in``). Some products: a file holding only them, whose rows replace theirs
  in the mirror in one transaction (``Store.replace_products``), with the run's outcome.

Usage::

    with rebuilding(path, (), check_account, keep_backups=1, requests=...) as target:
        target.result = await run_plan(client, target.store, plan, ..., run_id=target.run_id,
                                       previous=target.previous, backup_path=target.backup_path)
    # here the rebuild is in place (target.swapped), or an exception says why it is not

Why the nuke's run row goes into the live mirror first, and not only into the rebuild: a
failed or interrupted rebuild is thrown away, and its outcome must still be in the history.
On any failure the build is removed and the true outcome written into that row
(``_record_failed``); a kill -9 leaves the row 'running', which the next run marks failed.
A whole rebuild gets the row with the rest of the history (runs and change feed), and the
engine finishes it there, so a swapped-in mirror holds the finished row. A product rebuild
gets no history (its file is thrown away): the live row is finished in the transaction
that replaces the rows. The backup's name is chosen as the rebuild
starts, so the engine can put it in the result of a run that succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import account, backups
from .errors import Cancelled, RebuildFailed, ToolkitError
from .results import SyncResult
from .store import Reader, Store
from .vocabulary import Mode, RunStatus

log = logging.getLogger(__name__)

# Checks the account against a mirror (raising when it is another one) and returns the
# identity to record in it: ``Mirror._check_account``.
CheckAccount = Callable[[Reader], dict[str, str]]


@dataclass
class Target:
    """The store a run writes into, and what its result is to say about it.

    ``previous``: the mirror a nuke replaces (its tests count as held); ``run_id``: the run
    row the nuke started in the live mirror; ``backup_path``: where the replaced mirror will
    be kept; ``result``: the run's, handed back by the caller (a rebuild decides on it);
    ``swapped``: set once a rebuild is in place, after which the nuke has happened,
    whatever interrupts it.
    """

    store: Store
    previous: Reader | None = None
    run_id: int | None = None
    backup_path: Path | None = None
    result: SyncResult | None = None
    swapped: bool = False


@contextlib.contextmanager
def live(path: Path, check_account: CheckAccount, *, dry_run: bool) -> Iterator[Target]:
    """The mirror itself (a dry run: a scratch copy of it), its account checked first."""
    open_store = Store.open_dry_run if dry_run else Store.open
    with open_store(path) as store:
        account.record(store, check_account(store))
        yield Target(store)


@contextlib.contextmanager
def rebuilding(
    path: Path,
    products: tuple[int, ...],
    check_account: CheckAccount,
    *,
    keep_backups: int,
    requests: Callable[[], int],
) -> Iterator[Target]:
    """A nuke of ``path`` (``products``: some products, () the whole mirror).

    Yields the build to write into; when the block ends with ``target.result`` a success,
    swaps it in and keeps a backup (pruned to ``keep_backups``); otherwise raises
    ``RebuildFailed``, or lets the block's exception through, the mirror as it was.
    ``requests``: the client's request count so far, for the record of a failed nuke.
    """
    # Named now, so the engine can put it in the result; written only if the rebuild is in.
    backup = backups.backup_path_for(path) if path.exists() else None
    identity, run_id = _start(path, products, check_account)
    build = backups.build_path_for(path)
    target: Target | None = None
    try:
        with Store.open(build) as store, _previous(path) as previous:
            if not products:
                account.record(store, identity)  # the build becomes the mirror
                if path.exists():
                    store.copy_history_from(path)  # with the nuke's 'running' row
            target = Target(store, previous=previous, run_id=run_id, backup_path=backup)
            yield target
        result = target.result
        if result is None:
            raise RuntimeError("a rebuild ended without a result")
        _require_success(result, path)
        # No await from here on (none can happen in this function): once swapped in, the
        # nuke is done, whatever comes.
        if products:
            _replace_products(path, build, products, identity, target, result)
        else:
            backups.swap_in(build, path, forget_run=run_id, backup=target.backup_path)
        target.swapped = True
    except BaseException as exc:
        if target is None or not target.swapped:
            _record_failed(path, run_id, products, exc, requests())
        raise
    finally:
        backups.remove_database_files(build)
    backups.prune_backups(path, keep_backups)


def _start(
    path: Path, products: tuple[int, ...], check_account: CheckAccount
) -> tuple[dict[str, str], int | None]:
    """Check the account against the live mirror and record the nuke as running there.

    Returns the account identity and the row's id; None when there is no mirror yet and
    the whole of it is rebuilt (the build becomes the mirror, with the run's row in it).
    """
    if not path.exists() and not products:
        with Store.open_read_only(path) as empty:
            return check_account(empty), None
    with Store.open(path) as mirror:
        identity = check_account(mirror)
        return identity, mirror.start_run(Mode.NUKE, products, None) or None


@contextlib.contextmanager
def _previous(path: Path) -> Iterator[Reader | None]:
    """The mirror a nuke replaces, read-only: the rebuild is checked against its tests."""
    if not path.exists():
        yield None
        return
    with Store.open_read_only(path) as store:
        yield store


def _replace_products(
    path: Path,
    build: Path,
    products: tuple[int, ...],
    identity: dict[str, str],
    target: Target,
    result: SyncResult,
) -> None:
    """The rebuilt products' rows in place of theirs, with the run's outcome, after a backup."""
    if target.backup_path is not None:
        backups.make_backup(path, forget_run=target.run_id, backup=target.backup_path)
    with Store.open(path) as store:
        account.record(store, identity)

        def finish() -> None:
            store.finish_run(
                target.run_id or 0,
                status=result.status,
                requests=result.requests,
                counts=result.counts_json(),
                error=None,
            )

        # The rows and the run's outcome commit together.
        store.replace_products(build, products, also=finish)


def _require_success(result: SyncResult, path: Path) -> None:
    if result.status == RunStatus.SUCCESS:
        return
    reasons = "; ".join(
        f"product {r.product_id}: {r.error or f'{r.unreadable} unreadable records'}"
        for r in result.products
        if r.status != RunStatus.SUCCESS
    )
    raise RebuildFailed(
        f"the rebuild did not read everything ({result.status}: {reasons}); "
        f"{path} was left exactly as it was (only this run was added to its history)",
        result=result,
    )


def _record_failed(
    path: Path, run_id: int | None, products: tuple[int, ...], exc: BaseException, requests: int
) -> None:
    """Write the true outcome of a nuke that did not swap in into the live mirror."""
    result: Any = exc.result if isinstance(exc, RebuildFailed) else None
    status: str
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | Cancelled):
        status, error = (
            RunStatus.CANCELLED,
            "interrupted before the swap; the mirror was kept as it was",
        )
    elif isinstance(result, SyncResult):
        status, error = result.status, str(exc)
    else:
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    counts = result.counts_json() if isinstance(result, SyncResult) else {}
    try:
        with Store.open(path) as mirror, mirror.transaction():
            if run_id is None:
                run_id = mirror.start_run(Mode.NUKE, products, None)
            mirror.finish_run(run_id, status=status, requests=requests, counts=counts, error=error)
    except (ToolkitError, sqlite3.Error, OSError) as failure:  # never hide the cause
        log.warning("could not record the nuke's outcome in %s: %s", path, failure)
