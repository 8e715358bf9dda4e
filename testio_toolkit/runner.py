"""Run the async core from plain code: scripts, notebook cells, and other async code.

Usage::

    result = run_blocking(some_coroutine_function())  # waits; Ctrl-C cancels cleanly
    job = Job(some_coroutine_function())              # returns at once (widgets)
    job.future.add_done_callback(...); job.cancel()   # the future completes once it unwound

Why a private loop on a worker thread: a notebook cell already runs inside an event loop,
where ``asyncio.run()`` refuses to start, and ``nest_asyncio`` (archived) patches asyncio for
the whole process. Instead the toolkit owns one event loop on one daemon thread and hands it
coroutines; the calling thread only waits. That works the same in a script, in a cell, and
inside someone else's ``asyncio.run(...)``. Code that is already async can skip all this and
await ``tt.AsyncMirror``'s methods directly (``Mirror``'s blocking methods run them here).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from types import FrameType
from typing import Any, Generic, TypeVar

from .errors import Cancelled

T = TypeVar("T")

# How long an interrupted run may take to record itself as cancelled and release its lock.
CANCEL_GRACE_SECONDS = 5.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _worker_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="testio-toolkit-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


class Job(Generic[T]):
    """One coroutine running on the toolkit's loop, started at once; ``cancel()`` stops it.

    ``future`` completes only when the coroutine has ended, after a ``cancel()`` too (it is
    then cancelled). ``Future.cancel()`` of ``run_coroutine_threadsafe`` is not used because
    it reports "cancelled" at once, while the task still unwinds: records its run as
    cancelled, removes a half-built rebuild, releases the writer lock.
    """

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.done = threading.Event()  # set as the coroutine ends, however it ends
        self._loop = _worker_loop()
        self._task: asyncio.Task[T] | None = None
        self._cancel_requested = threading.Event()
        wrapper = self._run(coro)
        try:
            self.future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
                wrapper, self._loop
            )
        except BaseException:
            wrapper.close()  # never started: no "was never awaited" warnings
            coro.close()
            raise

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        self._task = asyncio.current_task()
        try:
            if self._cancel_requested.is_set():  # cancelled before it started
                coro.close()
                raise asyncio.CancelledError
            return await coro
        finally:
            self.done.set()

    def cancel(self) -> None:
        """Ask the coroutine to stop (from any thread); a job that has ended ignores it."""
        self._cancel_requested.set()  # seen by _run if the task is not known yet
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the toolkit's loop and wait for it.

    Ctrl-C while waiting cancels the coroutine, waits briefly for it to record the
    cancellation and release its lock, then raises ``Cancelled``.
    """
    if threading.current_thread().name == "testio-toolkit-loop":
        coro.close()
        raise RuntimeError("run_blocking() called from the toolkit's own loop; await instead")
    # The handler goes in first: a Ctrl-C just after the start must cancel the run too.
    with _sigint_as_flag() as interrupted:
        job = Job(coro)
        try:
            # Short waits in a loop keep the main thread responsive to signals.
            while not job.done.wait(0.2) and not interrupted.is_set():
                pass
        except KeyboardInterrupt:
            interrupted.set()  # SIGINT's handler was not ours (not the main thread, say)
        if interrupted.is_set() and not job.done.is_set():
            job.cancel()
            try:
                # A run past its point of no return (a nuke that swapped its rebuild in)
                # ends with its result despite the interrupt: report what really happened.
                return job.future.result(timeout=CANCEL_GRACE_SECONDS)
            except Exception:
                raise Cancelled(
                    "interrupted; the mirror is consistent and the run is marked cancelled"
                ) from None
        # Ended (a Ctrl-C that came as it ended is too late to cancel it): its outcome.
        try:
            return job.future.result()
        except concurrent.futures.CancelledError:
            raise Cancelled("the run was cancelled") from None


@contextlib.contextmanager
def _sigint_as_flag() -> Iterator[threading.Event]:
    """While waiting, let Ctrl-C set a flag instead of raising ``KeyboardInterrupt``.

    Why: Python raises ``KeyboardInterrupt`` between any two bytecodes, and one that lands
    inside ``threading.Condition.wait`` breaks the condition's lock ("cannot release
    un-acquired lock"), so the run could not be cancelled cleanly. A handler that only sets
    a flag never interrupts the wait. Installed only on the main thread and only over
    Python's default handler, so a host that handles SIGINT itself keeps it.
    """
    interrupted = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield interrupted
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
