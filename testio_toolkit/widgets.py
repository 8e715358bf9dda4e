"""The notebook control panel: buttons over ``Mirror.sync / refresh / nuke``, nothing more.

Usage in a notebook::

    import testio_toolkit as tt
    panel = tt.panel()          # last line of a cell: the panel shows itself
    panel                       # status, pickers, Sync / Refresh / Nuke..., progress, summary

    panel.sync_button.click()   # the same as pressing Sync; returns at once
    panel.wait()                # -> the SyncResult (None after an error, shown in the panel)

    tt.refresh_button()         # one button with its own progress bar, summary and error line

The buttons call the same methods a cell calls, in their awaitable form (``AsyncMirror``:
``await mirror.refresh(...)`` and friends; a panel takes a ``Mirror`` or an ``AsyncMirror``),
on the toolkit's own event-loop thread (a ``runner.Job``), so the kernel stays usable
while a job runs. Progress events arrive on that thread and move the bar; the job's
done-callback shows the result or the error, refreshes the status and enables the buttons.

**Nuke...** never nukes on one click: it shows the plan (``nuke_plan()``: what is thrown
away, where the backup goes); the red **Delete and rebuild** button is enabled only while
the box holds the word ``nuke``, and **Cancel** closes the confirmation and changes nothing.

After each run the summary says what it changed ("12 new bugs, 3 of them critical; ...",
``SyncResult.change_line``), and **What changed** (``Panel.changes_html``, a collapsible
card) counts the last seven days of the change feed per record and kind, with the latest
changes listed (``tt.changes()`` gives them all).

**Stop** (enabled while a job runs) is the panel's Ctrl-C: a kernel interrupt cannot reach a
job on the loop thread, so the button cancels it there (``runner.Job.cancel()``). The run
unwinds as after Ctrl-C: what was committed stays consistent, the run is recorded as
cancelled, the lock is released, and a stopped nuke leaves the database as it was.

ipywidgets is imported only when a widget is built, so ``import testio_toolkit`` works
without it; building one without it raises ImportError saying ``pip install ipywidgets``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from . import accounts, batch
from .api import as_async
from .backups import NukePlan
from .errors import RebuildFailed
from .export import ExportResult
from .export import available as export_available
from .results import ProgressEvent, SyncResult
from .runner import Job
from .vocabulary import CONFIRM_WORD, ChangeKind, Mode
from .vocabulary import PHASE_LABELS as PHASES

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import pandas as pd

    from .api import BaseMirror, MirrorStatus, Products, Since
    from .batch import AccountOutcome, BatchResult
    from .metrics import HealthFrame

Outcome = SyncResult | NukePlan | ExportResult
# The panel's Export button (shown when the export extra is installed): not a sync mode.
EXPORT = "export"
# ipywidgets ships no type information: its objects are Any to mypy.
Widget = Any

LABELS: dict[Mode, str] = {Mode.SYNC: "Sync", Mode.REFRESH: "Refresh", Mode.NUKE: "Nuke..."}
TOOLTIPS: dict[Mode, str] = {
    Mode.SYNC: "Incremental: new tests, tests that can still change, and their bugs",
    Mode.REFRESH: "Re-read everything and upsert it; keeps local columns, notes and history",
    Mode.NUKE: "Throw the mirror away and rebuild it "
    "(shows the plan and asks first; keeps a backup)",
}
ICONS: dict[Mode, str] = {Mode.SYNC: "refresh", Mode.REFRESH: "repeat", Mode.NUKE: "trash"}
# Progress events can come by the hundred per second; the widgets need a few a second.
REDRAW_SECONDS = 0.1
HIDDEN, SHOWN = "none", "flex"
STEPS = 1000  # the bar's resolution

log = logging.getLogger(__name__)


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            "the testio-toolkit control panel needs ipywidgets: pip install ipywidgets"
        ) from exc
    return ipywidgets


@dataclass(frozen=True)
class JobOptions:
    """What a button passes to the mirror: products (None = all), since, dry run."""

    products: Products = None
    since: Since = None
    dry_run: bool = False


PHASE_WORDS = {
    "products": "listing products",
    "tests": "reading test lists",
    "bugs": "reading bugs",
    "features": "reading features",
}


class _Tally:
    """Progress events summed per phase; safe to feed from the worker thread.

    The bar is the share of products done, known once the engine has listed them, so it
    only moves forward and never jumps back when a product turns out to have more bugs;
    the text next to it says what is being read and how much.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.phase = ""
        self._shown = 0.0

    def reset(self) -> None:
        with self._lock:
            self.done, self.total, self.phase, self._shown = {}, {}, "", 0.0

    def add(self, event: ProgressEvent) -> None:
        with self._lock:
            self.done[event.phase] = self.done.get(event.phase, 0) + event.advance
            self.total[event.phase] = self.total.get(event.phase, 0) + event.total
            if event.phase != "products" or not self.phase:
                self.phase = event.phase

    def products(self) -> tuple[int, int]:
        """(done, total) products; total 0 until the engine has listed them."""
        with self._lock:
            total = self.total.get("products", 0)
            return min(self.done.get("products", 0), total), total

    def fraction(self) -> float | None:
        """Share of the products done, never less than shown before; None while unknown."""
        done, total = self.products()
        if not total:
            return None
        with self._lock:
            self._shown = max(self._shown, done / total)
            return self._shown

    def text(self) -> str:
        """'reading bugs · products 1/3 · tests read 75 · bug lists 20/41 · features 43'."""
        with self._lock:
            parts = [PHASE_WORDS.get(self.phase, self.phase)] if self.phase else []
            for phase in (*PHASES, *sorted(set(self.done) - set(PHASES))):
                if phase not in self.done:
                    continue
                label = PHASES.get(phase, phase)
                size = self.total.get(phase, 0)
                done = min(self.done[phase], size) if size else self.done[phase]
                parts.append(f"{label} {done}/{size}" if size else f"{label} {done}")
        return " · ".join(parts)


class _Controls:
    """The machinery the panel and the single buttons share.

    One job at a time: it disables the action buttons, runs the mirror's coroutine on the
    toolkit's loop thread, feeds the progress bar from its events, and on completion shows
    the result (or the error), calls ``_after_job`` and enables the buttons again. It also
    owns the nuke confirmation: plan, confirmation word, red button, Cancel.
    """

    def __init__(self, mirror: BaseMirror, modes: Sequence[Mode]) -> None:
        w = _ipywidgets()
        self.mirror = mirror
        self.buttons: dict[str, Widget] = {}
        for mode in modes:
            button = w.Button(
                description=LABELS[mode],
                tooltip=TOOLTIPS[mode],
                icon=ICONS[mode],
                layout=w.Layout(width="auto"),
            )
            button.on_click(self._handler(mode))
            self.buttons[mode] = button
        self.progress: Widget = w.IntProgress(
            value=0,
            min=0,
            max=STEPS,
            description="idle",
            style={"description_width": "initial"},
            layout=w.Layout(width="45%"),
        )
        self.progress_text: Widget = w.HTML()
        self.progress_text.add_class("testio-progress-text")
        self.summary: Widget = w.HTML()
        self.summary.add_class("testio-summary")
        self.error: Widget = w.HTML()
        self.error.add_class("testio-error-line")
        # The nuke confirmation, hidden until Nuke... shows a plan.
        self.plan: Widget = w.HTML()
        self.confirm_text: Widget = w.Text(
            value="",
            placeholder=CONFIRM_WORD,
            description=f"Type {CONFIRM_WORD}:",
            continuous_update=True,
        )
        self.confirm_button: Widget = w.Button(
            description="Delete and rebuild",
            button_style="danger",
            icon="trash",
            disabled=True,
            layout=w.Layout(width="auto"),
            tooltip=f"Enabled once the box holds the word {CONFIRM_WORD!r}",
        )
        self.cancel_button: Widget = w.Button(
            description="Cancel", tooltip="Changes nothing", layout=w.Layout(width="auto")
        )
        self.confirmation: Widget = w.VBox(
            [self.plan, w.HBox([self.confirm_text, self.confirm_button, self.cancel_button])],
            layout=w.Layout(display=HIDDEN, padding="4px 8px"),
        )
        self.confirmation.add_class("testio-confirmation")
        self.confirm_text.observe(self._on_confirm_text, names="value")
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)
        self.stop_button: Widget = w.Button(
            description="Stop",
            icon="stop",
            disabled=True,
            tooltip="Cancel the running job; the mirror stays consistent",
            layout=w.Layout(width="auto"),
        )
        self.stop_button.on_click(self._on_stop)

        self.result: Outcome | None = None
        self.last_error: BaseException | None = None
        self.widget: Widget = None  # the root box, built by the subclass
        self._running: str | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._tally = _Tally()
        self._drawn_at = 0.0
        # Set by Stop: the bar keeps what was done when it was pressed (the products the
        # engine unwinds afterwards were not read).
        self._frozen = False
        # The products of the plan on show: what the red button nukes, whatever the pickers
        # say by then. None when no plan is on show.
        self._pending_nuke: tuple[int, ...] | None = None
        self._job: Job[Outcome] | None = None  # the running or last job; Stop cancels it
        self._dry_run = False  # of the running or last job
        # Held while a job's end is shown, so a Stop pressed just then cannot write over it.
        self._ending = threading.Lock()

    # -- what subclasses provide -----------------------------------------------------------

    def _options(self) -> JobOptions:
        return JobOptions()

    def _after_job(self) -> None:
        """Called on the worker thread once a job has ended, before the buttons come back."""

    # -- public ----------------------------------------------------------------------------

    @property
    def job(self) -> Future[Outcome] | None:
        """The Future of the running or last job; None before the first."""
        return self._job.future if self._job else None

    @property
    def busy(self) -> bool:
        """True while a job runs (its buttons are disabled)."""
        return not self._idle.is_set()

    def wait(self, timeout: float | None = 60) -> Outcome | None:
        """Block until the current job is done and the panel shows its outcome.

        >>> panel.sync_button.click(); panel.wait()    # -> SyncResult

        Returns the SyncResult (a NukePlan for a dry-run nuke), or None when the job failed
        (the error is in ``.error``) or no job was started. Raises TimeoutError when the job
        is still running after ``timeout`` seconds.
        """
        if self.job is None:
            return self.result  # None, or the plan a dry-run Nuke... showed
        if not self._idle.wait(timeout):
            raise TimeoutError(f"the {self._running or 'job'} is still running after {timeout}s")
        return self.result

    def stop(self) -> None:
        """Stop the running job, as the Stop button does; no job running: nothing happens.

        >>> panel.refresh_button.click(); panel.stop(); panel.wait()   # -> None, "Stopped"
        """
        with self._ending:
            if not self.busy:
                return
            self._frozen = True
            if self._job is not None:
                self._job.cancel()
            self.stop_button.disabled = True
            self.progress.description = "stopping"
            self.summary.value = "<i>Stopping...</i>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        state = f"running {self._running}" if self.busy else "idle"
        source = "SANDBOX" if self.mirror.sandbox else self.mirror.source
        return f"<{type(self).__name__} {source} db={self.mirror.path} {state}>"

    # -- running a job ---------------------------------------------------------------------

    def _handler(self, mode: Mode) -> Callable[[Widget], None]:
        def clicked(_button: Widget = None) -> None:
            if mode == Mode.NUKE:
                self._show_nuke_plan()
            else:
                self._start(mode, self._options())

        return clicked

    def _coroutine(self, mode: str, options: JobOptions) -> Coroutine[Any, Any, Outcome]:
        # The awaitable face: the Job runs the coroutine on the toolkit's loop thread.
        if mode == EXPORT:  # local work: a thread, awaited on the loop
            return asyncio.to_thread(self.mirror.export, progress=False)
        mirror, emit = as_async(self.mirror), self._on_progress
        if mode in (Mode.SYNC, Mode.REFRESH):
            run = mirror.sync if mode == Mode.SYNC else mirror.refresh
            return run(
                options.products,
                options.since,
                dry_run=options.dry_run,
                progress=False,
                on_progress=emit,
            )
        # Only reached from the red button, after the word was typed.
        return mirror.nuke(options.products, confirm=True, progress=False, on_progress=emit)

    def _start(self, mode: str, options: JobOptions) -> None:
        if self.busy:
            return
        self._close_confirmation()
        self._idle.clear()
        self._running = mode
        self._set_buttons(busy=True)
        self.result = self.last_error = None
        self.error.value = ""
        label = LABELS[Mode(mode)].rstrip(".") if mode != EXPORT else "Export"
        self.summary.value = f"<i>{html.escape(label)} running...</i>"
        self._tally.reset()
        self._frozen = False
        self.progress.bar_style = "info"
        self.progress.value = 0
        self.progress.description = f"{mode}: starting"
        self.progress_text.value = ""
        self._dry_run = options.dry_run
        try:
            job = Job(self._coroutine(mode, options))
        except BaseException as exc:
            self._show_error(exc)
            self._running = None
            self._set_buttons(busy=False)
            self._idle.set()
            return
        self._job = job
        if mode == EXPORT:
            self.stop_button.disabled = True  # a load is not cancelled half-way
        job.future.add_done_callback(self._finished)

    def _on_stop(self, _button: Widget = None) -> None:
        self.stop()

    def _on_progress(self, event: ProgressEvent) -> None:
        # Runs on the worker thread, inside the sync: a drawing problem must not stop it.
        try:
            if self._frozen:
                return
            self._tally.add(event)
            now = time.monotonic()
            if now - self._drawn_at >= REDRAW_SECONDS:
                self._drawn_at = now
                self._draw_progress()
        except Exception:
            log.exception("could not draw a progress event")

    def _draw_progress(self) -> None:
        fraction = self._tally.fraction()
        done, total = self._tally.products()
        mode = self._running or "job"
        if fraction is None:
            self.progress.description = f"{mode}: starting"
        else:
            self.progress.value = max(self.progress.value, round(fraction * STEPS))
            self.progress.description = f"{mode}: {done}/{total} products"
        self.progress_text.value = html.escape(self._tally.text())

    def _finished(self, future: Future[Outcome]) -> None:
        with self._ending:
            try:
                if not self._frozen:
                    self._draw_progress()
                try:
                    outcome = future.result()
                except CancelledError:
                    self._show_stopped()
                except BaseException as exc:
                    self._show_error(exc)
                    self.progress.bar_style = "danger"
                else:
                    self._show_outcome(outcome)
                try:
                    self._after_job()
                except Exception as exc:
                    self._show_error(exc, append=True)
            finally:
                self._running = None
                self._set_buttons(busy=False)
                self._idle.set()

    def _show_outcome(self, outcome: Outcome) -> None:
        self.result = outcome
        if isinstance(outcome, ExportResult):
            self.progress.value = self.progress.max
            self.progress.description = "export: done"
            self.progress.bar_style = "success"
        if isinstance(outcome, SyncResult):
            self.progress.value = self.progress.max
            self.progress.description = f"{outcome.mode}: {outcome.status}"
            self.progress.bar_style = {"success": "success", "partial": "warning"}.get(
                outcome.status, "danger"
            )
        self.summary.value = _outcome_html(outcome)

    def _show_stopped(self) -> None:
        self.progress.bar_style = "warning"
        done, total = self._tally.products()
        self.progress.description = f"{self._running or 'job'}: stopped"
        self.progress_text.value = html.escape(
            f"stopped after {done} of {total} products" if total else "stopped before it began"
        )
        if self._dry_run:
            kept = "a dry run, it wrote nothing"
        elif self._running == Mode.NUKE:
            kept = "the database is as it was, and the half-built mirror was removed"
        else:
            kept = (
                "what it wrote is kept, consistent, and the run is recorded as cancelled in "
                "<code>tt.runs()</code>; the next run continues from there"
            )
        self.summary.value = (
            f"<div class='testio-card testio-stopped'><b>Stopped.</b> The "
            f"{html.escape(self._running or 'job')} was cancelled: {kept}.</div>"
        )

    def _show_error(self, exc: BaseException, *, append: bool = False) -> None:
        """Show ``exc`` in the error line; ``append`` keeps what is shown (summary included)."""
        self.last_error = exc
        text = _error_html(exc, self._secrets())
        if append:
            self.error.value += text
            return
        failed = getattr(exc, "result", None) if isinstance(exc, RebuildFailed) else None
        # For a failed rebuild, what it managed before it gave up, per product.
        self.summary.value = _outcome_html(failed) if isinstance(failed, SyncResult) else ""
        self.error.value = text

    def _secrets(self) -> list[str]:
        token = self.mirror.settings.token
        return [token.reveal()] if token else []

    def _set_buttons(self, *, busy: bool) -> None:
        for button in self.buttons.values():
            button.disabled = busy
        self.stop_button.disabled = not busy
        self.cancel_button.disabled = busy
        self.confirm_button.disabled = busy or self.confirm_text.value != CONFIRM_WORD

    # -- the nuke confirmation -------------------------------------------------------------

    def _show_nuke_plan(self) -> None:
        if self.busy:
            return
        options = self._options()
        self.error.value = ""
        try:
            plan = self.mirror.nuke_plan(options.products)  # reads only
        except Exception as exc:
            self._close_confirmation()
            self._show_error(exc)
            return
        if options.dry_run:
            self._close_confirmation()
            self.result = plan
            self.summary.value = (
                "<p><b>Dry run:</b> this is what a nuke would do; nothing changed.</p>"
                + _plan_html(plan, ask=False)
            )
            return
        self._pending_nuke = plan.product_ids
        note = (
            "<p>The since date does not apply: a nuke rebuilds everything of the products "
            "it covers.</p>"
            if options.since
            else ""
        )
        self.plan.value = _plan_html(plan) + note
        self.confirm_text.value = ""
        self.confirm_button.disabled = True
        self.confirmation.layout.display = SHOWN

    def _on_confirm_text(self, change: dict[str, Any]) -> None:
        self.confirm_button.disabled = self.busy or change["new"] != CONFIRM_WORD

    def _on_confirm(self, _button: Widget = None) -> None:
        products = self._pending_nuke
        # Checked here too: a click on a disabled button still reaches handlers from code.
        if self.busy or products is None or self.confirm_text.value != CONFIRM_WORD:
            return
        self._start(Mode.NUKE, JobOptions(products=products))

    def _on_cancel(self, _button: Widget = None) -> None:
        self._close_confirmation()

    def _close_confirmation(self) -> None:
        self._pending_nuke = None
        self.confirm_text.value = ""
        self.confirm_button.disabled = True
        self.plan.value = ""
        self.confirmation.layout.display = HIDDEN

    @property
    def confirming(self) -> bool:
        """True while a nuke plan waits for the confirmation word."""
        return self._pending_nuke is not None


class Panel(_Controls):
    """The control panel: status, pickers, Sync / Refresh / Nuke..., progress and results.

    >>> panel = tt.panel()              # in a notebook cell; Panel(mirror) for another mirror
    >>> panel.products_picker.value = (18640,); panel.dry_run_checkbox.value = True
    >>> panel.refresh_button.click(); panel.wait()          # -> SyncResult
    >>> panel.nuke_button.click()                           # shows the plan; nothing changes
    >>> panel.confirm_text.value = "nuke"; panel.confirm_button.click(); panel.wait()

    >>> panel.export_button.click(); panel.wait()           # -> ExportResult (tt.export())

    Widgets, for code and tests: ``sync_button``, ``refresh_button``, ``nuke_button``,
    ``export_button`` (None without the export extra),
    ``confirm_text``, ``confirm_button``, ``cancel_button``, ``stop_button``,
    ``products_picker`` (empty means all), ``since_picker``, ``dry_run_checkbox``,
    ``progress``, ``summary``, ``error``,
    ``status_html``, ``health_html`` (the worst products and quarters by the playbook's
    thresholds), ``changes_html`` (the last seven days); ``widget`` is the root box;
    ``job`` the Future of the running or last job; ``result`` its outcome.
    """

    def __init__(self, mirror: BaseMirror) -> None:
        super().__init__(mirror, (Mode.SYNC, Mode.REFRESH, Mode.NUKE))
        w = _ipywidgets()
        self.sync_button: Widget = self.buttons[Mode.SYNC]
        self.refresh_button: Widget = self.buttons[Mode.REFRESH]
        self.nuke_button: Widget = self.buttons[Mode.NUKE]
        self.nuke_button.button_style = "warning"
        # Export: only with the export extra (dlt) installed; None without it.
        self.export_button: Widget = None
        if export_available():
            self.export_button = w.Button(
                description="Export",
                icon="database",
                tooltip="Load the mirror into team.duckdb beside it: tt.export()",
                layout=w.Layout(width="auto"),
            )
            self.export_button.on_click(lambda _button=None: self._start(EXPORT, JobOptions()))
            self.buttons[EXPORT] = self.export_button
        self.status_html: Widget = w.HTML()
        self.changes_html: Widget = w.HTML()
        self.health_html: Widget = w.HTML()
        self.products_picker: Widget = w.SelectMultiple(
            options=[], rows=4, description="Products", tooltip="None selected: all products"
        )
        self.since_picker: Widget = w.DatePicker(description="Since", value=None)
        self.dry_run_checkbox: Widget = w.Checkbox(
            value=False, description="Dry run (read and count, write nothing)", indent=False
        )
        # Named accounts (testio-toolkit account add): pick whose mirror the panel works on.
        names = accounts.load().names()
        self.account_picker: Widget = w.Dropdown(
            options=[("(configured default)", ""), *((n, n) for n in names)],
            value=mirror.account if mirror.account in names else "",
            description="Account",
            layout=w.Layout(display=None if names else HIDDEN),
        )
        self.account_picker.observe(self._on_account, names="value")
        # Every account at once (tt.sync_all()): a line per account as each starts and ends.
        self.sync_all_button: Widget = w.Button(
            description="Sync all accounts",
            icon="refresh",
            tooltip="tt.sync_all(): every named account, a few at a time",
            layout=w.Layout(width="auto", display=None if names else HIDDEN),
        )
        self.sync_all_button.on_click(self._on_sync_all)
        self.accounts_html: Widget = w.HTML()
        self.all_result: BatchResult | None = None
        self._all_done = threading.Event()
        self._all_done.set()
        pickers = w.HBox(
            [
                w.VBox([self.account_picker, self.products_picker]),
                w.VBox(
                    [
                        self.since_picker,
                        self.dry_run_checkbox,
                        w.HTML("<small>No product selected: all products.</small>"),
                    ]
                ),
            ]
        )
        self.widget = w.VBox(
            [
                w.HTML(STYLE + "<div class='testio-title'>TestIO mirror</div>"),
                self.status_html,
                pickers,
                w.HBox([*self.buttons.values(), self.stop_button, self.sync_all_button]),
                self.confirmation,
                w.HBox([self.progress, self.progress_text]),
                self.summary,
                self.error,
                self.accounts_html,
                self.health_html,
                self.changes_html,
            ]
        )
        self.widget.add_class("testio-panel")
        try:
            self.refresh_status()
        except Exception as exc:
            self._show_error(exc)

    def _options(self) -> JobOptions:
        chosen = tuple(int(p) for p in self.products_picker.value)
        since = self.since_picker.value
        return JobOptions(
            products=chosen or None,
            since=since if isinstance(since, date) else None,
            dry_run=bool(self.dry_run_checkbox.value),
        )

    def _after_job(self) -> None:
        self.refresh_status()

    def _set_buttons(self, *, busy: bool) -> None:
        super()._set_buttons(busy=busy)
        if hasattr(self, "account_picker"):
            self.account_picker.disabled = busy  # no switching under a running job

    def _on_sync_all(self, _button: Widget = None) -> None:
        """Sync every named account; the table shows each one's progress, then the summary."""
        if self.busy or not self._all_done.is_set():
            return
        lines = dict.fromkeys(accounts.load().names(), "waiting")

        def draw() -> None:
            self.accounts_html.value = "<br>".join(
                f"<b>{html.escape(name)}</b>: {html.escape(text)}" for name, text in lines.items()
            )

        def started(name: str) -> None:
            lines[name] = "running..."
            draw()

        def ended(outcome: AccountOutcome) -> None:
            lines[outcome.account] = outcome.line().partition(": ")[2]
            draw()

        def finish(future: Future[BatchResult]) -> None:
            try:
                self.all_result = future.result()
                self.accounts_html.value = self.all_result._repr_html_()
                self.refresh_status()
            except BaseException as exc:
                self._show_error(exc)
            finally:
                self._set_buttons(busy=False)
                self.sync_all_button.disabled = False
                self._all_done.set()

        self._all_done.clear()
        self._set_buttons(busy=True)
        self.stop_button.disabled = True  # Stop stops one mirror's run, not this
        self.sync_all_button.disabled = True
        self.error.value = ""
        draw()
        Job(batch.run_all(on_start=started, on_done=ended)).future.add_done_callback(finish)

    def wait_all(self, timeout: float | None = 120) -> BatchResult | None:
        """Block until "Sync all accounts" is done: ``panel.sync_all_button.click();
        panel.wait_all()`` -> the BatchResult (None if it failed as a whole)."""
        if not self._all_done.wait(timeout):
            raise TimeoutError(f"sync of all accounts still running after {timeout}s")
        return self.all_result

    def _on_account(self, change: dict[str, Any]) -> None:
        """Another account picked: the panel now works on that account's mirror."""
        if self.busy:
            return
        self.mirror = type(self.mirror)(account=change["new"] or None, progress=False)
        self.confirmation.layout.display = HIDDEN
        self.summary.value = self.error.value = ""
        self.products_picker.value = ()
        try:
            self.refresh_status()
        except Exception as exc:
            self._show_error(exc)

    def refresh_status(self) -> None:
        """Show again what the mirror holds, and the products to pick from."""
        self.status_html.value = _status_html(self.mirror.status(), self.mirror.sandbox)
        self.changes_html.value = _recent_html(self.mirror.changes(since=f"{RECENT_DAYS}d"))
        self.health_html.value = _health_html(self.mirror.health(by="product", period="quarter"))
        frame = self.mirror.products()
        options = [
            (f"{pid} {name}", int(pid))
            for pid, name in zip(frame["id"], frame["name"], strict=True)
        ]
        if options != list(self.products_picker.options):
            keep = [p for p in self.products_picker.value if p in {v for _, v in options}]
            self.products_picker.options = options
            self.products_picker.value = tuple(keep)


class ActionButton(_Controls):
    """One button (Sync, Refresh or Nuke...) with its own progress bar, summary and error.

    >>> tt.sync_button()                       # in a notebook cell: displays itself
    >>> b = tt.nuke_button(); b.button.click() # shows the plan and the confirmation
    >>> b.confirm_text.value = "nuke"; b.confirm_button.click(); b.wait()

    Attributes: ``button``, ``stop_button``, ``progress``, ``summary``, ``error``, ``job``,
    ``result``, ``wait()``, ``stop()``; the nuke button also ``confirm_text``,
    ``confirm_button``, ``cancel_button``.
    """

    def __init__(
        self,
        mirror: BaseMirror,
        mode: Mode,
        *,
        products: Products = None,
        since: Since = None,
        dry_run: bool = False,
    ) -> None:
        super().__init__(mirror, (mode,))
        w = _ipywidgets()
        self.mode = mode
        self.button: Widget = self.buttons[mode]
        if mode == Mode.NUKE:
            self.button.button_style = "warning"
        self._fixed = JobOptions(products=products, since=since, dry_run=dry_run)
        parts = [w.HBox([self.button, self.stop_button])]
        if mode == Mode.NUKE:
            parts.append(self.confirmation)
        parts += [w.HBox([self.progress, self.progress_text]), self.summary, self.error]
        source = (
            "<span class='testio-badge'>SANDBOX data</span> (no token configured)"
            if mirror.sandbox
            else f"<code>{html.escape(mirror.source)}</code>"
        )
        parts.insert(0, w.HTML(STYLE + f"<div class='testio-source'>{source}</div>"))
        self.widget = w.VBox(parts)
        self.widget.add_class("testio-panel")

    def _options(self) -> JobOptions:
        return self._fixed


def _mirror(mirror: BaseMirror | None) -> BaseMirror:
    if mirror is not None:
        return mirror
    from .api import default_mirror

    return default_mirror()


def sync_button(
    mirror: BaseMirror | None = None,
    *,
    products: Products = None,
    since: Since = None,
    dry_run: bool = False,
) -> ActionButton:
    """A Sync button for a notebook: ``tt.sync_button()`` (default mirror) or ``(mirror)``.

    >>> tt.sync_button(products=[18640], since="2025-01-01")

    Pressing it runs ``mirror.sync(...)`` in the background with a progress bar, then shows
    the SyncResult's summary (or the error).
    """
    return ActionButton(_mirror(mirror), Mode.SYNC, products=products, since=since, dry_run=dry_run)


def refresh_button(
    mirror: BaseMirror | None = None,
    *,
    products: Products = None,
    since: Since = None,
    dry_run: bool = False,
) -> ActionButton:
    """A Refresh button: ``tt.refresh_button()``; pressing it runs ``mirror.refresh(...)``.

    >>> tt.refresh_button(dry_run=True)     # read and count, write nothing
    """
    return ActionButton(
        _mirror(mirror), Mode.REFRESH, products=products, since=since, dry_run=dry_run
    )


def nuke_button(mirror: BaseMirror | None = None, *, products: Products = None) -> ActionButton:
    """A Nuke... button: ``tt.nuke_button()``; it shows the plan and asks before anything.

    >>> b = tt.nuke_button()
    >>> b.button.click()                                   # the plan; nothing changes
    >>> b.confirm_text.value = "nuke"; b.confirm_button.click(); b.wait()   # -> SyncResult
    """
    return ActionButton(_mirror(mirror), Mode.NUKE, products=products)


# JupyterLab's own CSS variables (with fallbacks for static viewers), so the panel reads
# in light and dark themes alike.
STYLE = """<style>
.testio-panel { font-family: var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #222); gap: 4px; }
.testio-title { font-size: var(--jp-content-font-size3, 1.2em); font-weight: 600; }
.testio-card { border: 1px solid var(--jp-border-color2, #ccc); border-radius: 6px;
  background: var(--jp-layout-color1, #fff); padding: 8px 12px; margin: 2px 0; }
.testio-card table { border-collapse: collapse; }
.testio-card th { text-align: left; font-weight: 600; padding: 1px 12px 1px 0;
  color: var(--jp-ui-font-color2, #555); }
.testio-card td { padding: 1px 12px 1px 0; }
.testio-badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-weight: 600;
  background: var(--jp-warn-color2, #ffe08a); color: var(--jp-ui-font-color0, #000); }
.testio-account { display: inline-block; border-radius: 4px; padding: 0 6px;
  font-weight: 600; background: var(--jp-brand-color3, #bbdefb);
  color: var(--jp-ui-font-color0, #000); }
.testio-muted { color: var(--jp-ui-font-color2, #666); }
.testio-card.testio-error { border-left: 4px solid var(--jp-error-color1, #d32f2f); }
.testio-card.testio-stopped { border-left: 4px solid var(--jp-warn-color1, #f57c00); }
.testio-card.testio-ok { border-left: 4px solid var(--jp-success-color1, #388e3c); }
.testio-card.testio-warn { border-left: 4px solid var(--jp-warn-color1, #f57c00); }
.testio-confirmation { border: 2px solid var(--jp-error-color1, #d32f2f);
  border-radius: 6px; }
</style>"""


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def _status_html(status: MirrorStatus, sandbox: bool) -> str:
    """The mirror's state as a card: source, file, counts, last runs, backups, unreadable."""
    if sandbox:
        source = (
            "<span class='testio-badge'>SANDBOX data</span> <span class='testio-muted'>no token "
            "is configured: generated sample data from the bundled sandbox, not a real "
            "account</span>"
        )
    else:
        source = f"<span class='testio-account'>{html.escape(status.source)}</span>"
    rows = [("Source", source)]
    where = f"<code>{html.escape(status.db_path)}</code>"
    if not status.exists:
        rows.append(("Database", where + " <i>no database yet: run a sync</i>"))
    else:
        rows.append(("Database", f"{where} ({_size(status.size_bytes)})"))
        held = ", ".join(f"{n:,} {t}" for t, n in status.table_counts.items())
        rows.append(("Holds", html.escape(held)))
        for mode in ("sync", "refresh", "nuke"):
            run = status.last_runs.get(mode)
            text = (
                f"{html.escape(str(run['status']))} at {html.escape(str(run['started_at']))}"
                if run
                else "<span class='testio-muted'>never</span>"
            )
            rows.append((f"Last {mode}", text))
        rows.append(("Unreadable", f"{status.open_unreadable} records waiting for a retry"))
        backups = ", ".join(f"<code>{html.escape(b)}</code>" for b in status.backups)
        rows.append(("Backups", backups or "<span class='testio-muted'>none</span>"))
    if status.cannot_update:
        rows.append(("Updates", "not possible here: " + html.escape(status.cannot_update)))
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f"<div class='testio-card testio-status'><table>{body}</table></div>"


RECENT_DAYS = 7  # what the panel's "What changed" card covers
RECENT_LISTED = 15  # the latest changes it lists


def _recent_html(frame: pd.DataFrame) -> str:
    """The last days of the change feed as a collapsible card: counts per record and kind,
    then the latest changes, newest first."""
    title = f"What changed in the last {RECENT_DAYS} days"
    if frame.empty:
        return (
            f"<details class='testio-card testio-changes'><summary><b>{title}</b>: nothing "
            "recorded</summary></details>"
        )
    counts = frame.groupby(["entity", "kind"], observed=True).size()
    kinds = [k for k in frame["kind"].cat.categories if k in set(frame["kind"])]
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in kinds)
    body = ""
    for entity in [e for e in frame["entity"].cat.categories if e in set(frame["entity"])]:
        cells = "".join(f"<td>{int(counts.get((entity, k), 0))}</td>" for k in kinds)
        body += f"<tr><th>{html.escape(str(entity))}s</th>{cells}</tr>"
    latest = ""
    for row in frame.tail(RECENT_LISTED).iloc[::-1].itertuples():
        what = (
            f"{row.field}: {row.old} → {row.new}"
            if row.kind == ChangeKind.CHANGED
            else str(row.kind)
        )
        latest += (
            f"<tr><td>{row.at:%Y-%m-%d %H:%M}</td><td>{html.escape(str(row.entity))} "
            f"{row.entity_id}</td><td>{html.escape(str(row.title or ''))[:60]}</td>"
            f"<td>{html.escape(what)}</td></tr>"
        )
    return (
        f"<details class='testio-card testio-changes'><summary><b>{title}</b>: "
        f"{len(frame):,} changes (<code>tt.changes()</code>)</summary>"
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>Latest:</p><table><tbody>{latest}</tbody></table></details>"
    )


HEALTH_LISTED = 3  # the worst rows the panel's health card shows


def _health_html(frame: HealthFrame) -> str:
    """The few worst product-quarters by the playbook's thresholds, coloured as
    ``tt.health()`` colours them, as a small card."""
    import pandas as pd

    from .metrics import COLOURS

    title = "Health: the worst product quarters"
    worst = frame.worst(HEALTH_LISTED)
    if worst.empty:
        return (
            f"<div class='testio-card testio-health'><b>{title}</b>: every graded rate is "
            "healthy (<code>tt.health()</code>)</div>"
        )
    grades = frame.grades()
    rates = list(grades.columns)
    head = "".join(f"<th>{html.escape(r.replace('_', ' '))}</th>" for r in rates)
    body = ""
    for index, row in worst.iterrows():
        cells = ""
        graded = grades.loc[[index]].iloc[0]
        for rate in rates:
            grade = graded[rate]
            colour = COLOURS.get(grade, "") if isinstance(grade, str) else ""
            value = row[rate]
            text = "-" if pd.isna(value) else f"{float(value):.0%}"
            cells += f"<td style='background-color: {colour}'>{text}</td>"
        body += (
            f"<tr><td>{html.escape(str(row['product']))}</td>"
            f"<td>{html.escape(str(row['period']))}</td><td>{int(row['bugs'])}</td>{cells}</tr>"
        )
    return (
        f"<div class='testio-card testio-health'><b>{title}</b> (<code>tt.health()</code>)"
        f"<table><thead><tr><th>product</th><th>quarter</th><th>bugs</th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _plan_html(plan: NukePlan, *, ask: bool = True) -> str:
    """The nuke plan in a GUI's words: what goes, what stays, which buttons to press."""
    lines = [line for line in plan.lines() if not line.startswith("Nothing has changed")]
    items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines[1:])
    ask_text = (
        f"<p><b>Nothing has changed yet.</b> To go ahead, type <code>{CONFIRM_WORD}</code> in "
        "the box and press <b>Delete and rebuild</b>; <b>Cancel</b> changes nothing.</p>"
        if ask
        else ""
    )
    return (
        f"<div class='testio-plan'><p><b>{html.escape(lines[0])}</b></p><ul>{items}</ul>"
        f"{ask_text}</div>"
    )


def _outcome_html(outcome: Outcome) -> str:
    if isinstance(outcome, NukePlan):
        return _plan_html(outcome, ask=False)
    if isinstance(outcome, ExportResult):
        return f"<div class='testio-card testio-ok'>{outcome._repr_html_()}</div>"
    tone = {"success": "testio-ok", "partial": "testio-warn"}.get(outcome.status, "testio-error")
    text = outcome._repr_html_()
    if outcome.backup_path:
        text += (
            f"<p>The previous mirror is kept as <code>{html.escape(outcome.backup_path)}</code>"
            "; <code>tt.restore()</code> brings it back.</p>"
        )
    return f"<div class='testio-card {tone}'>{text}</div>"


def _error_html(exc: BaseException, secrets: Sequence[str]) -> str:
    """'<b>AuthenticationError</b>: message', with any secret blanked out, for the panel."""
    name = type(exc).__name__
    message = str(exc) or repr(exc)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return (
        f"<div class='testio-card testio-error'><b>{html.escape(name)}</b>: "
        f"{html.escape(message)}</div>"
    )


__all__ = [
    "ActionButton",
    "JobOptions",
    "Panel",
    "nuke_button",
    "refresh_button",
    "sync_button",
]
