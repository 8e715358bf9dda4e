"""The runner: blocking calls over the toolkit's loop, and Ctrl-C while they wait."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from testio_toolkit.errors import Cancelled
from testio_toolkit.runner import run_blocking


def test_run_blocking_returns_the_coroutine_result_and_raises_its_error() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert run_blocking(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        run_blocking(fail())


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.19, 0.2, 0.21, 0.33])
def test_ctrl_c_at_any_moment_cancels_the_run_unwinds_it_and_restores_the_handler(
    delay: float,
) -> None:
    # A KeyboardInterrupt that lands inside a Condition.wait broke the wait once in CI
    # ("cannot release un-acquired lock"); delays around the 0.2 s wait slice probe that.
    started, unwound = threading.Event(), threading.Event()

    async def long_run() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            unwound.set()

    def press_ctrl_c() -> None:
        if started.wait(5):
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    with pytest.raises(Cancelled, match="interrupted"):
        run_blocking(long_run())
    presser.join()

    assert unwound.is_set(), "the coroutine was not unwound before Cancelled was raised"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_burst_of_ctrl_c_still_waits_for_the_unwind_and_ends_in_one_cancelled() -> None:
    # Impatient users press Ctrl-C again while the run records its cancellation; the
    # extra presses must not cut that short (the lock and the run record would be left).
    started, pressed, unwound = threading.Event(), threading.Event(), threading.Event()

    async def slow_to_unwind() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            # Unwinding outlasts the presses, as a run writing its cancelled record might.
            await asyncio.shield(asyncio.to_thread(pressed.wait, 5))
            unwound.set()

    def press_ctrl_c_five_times() -> None:
        if started.wait(5):
            for _ in range(5):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            time.sleep(0.1)  # let the main thread take the last signal
        pressed.set()

    presser = threading.Thread(target=press_ctrl_c_five_times)
    presser.start()
    with pytest.raises(Cancelled, match="interrupted"):
        run_blocking(slow_to_unwind())
    presser.join()

    assert unwound.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
