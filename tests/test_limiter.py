"""The AIMD limiter's decisions, by hand-computed sequences (no event loop, no clock)."""

from __future__ import annotations

import pytest

from testio_toolkit.limiter import Limiter, LimiterFigures, is_overload


def test_overload_signals_are_429_503_504_524_and_no_answer_but_not_500() -> None:
    assert [s for s in (200, 400, 429, 500, 502, 503, 504, 524) if is_overload(s)] == [
        429,
        503,
        504,
        524,
    ]
    assert is_overload(None)  # a timeout or a dropped connection


def test_slow_start_adds_one_per_success_until_the_first_cut() -> None:
    limiter = Limiter(start=4, bounds=(2, 64))
    for _ in range(4):  # one round trip of 4 requests, all in use
        limiter.succeeded(limiter.sent(in_flight=4))
    assert limiter.limit == 8


def test_after_a_cut_growth_is_half_a_request_per_round_trip() -> None:
    limiter = Limiter(start=10, bounds=(2, 64))
    limiter.overloaded(limiter.sent(in_flight=10))
    assert limiter.limit == 7  # floor(10 * 0.7)
    # Congestion avoidance: each success adds 0.5 / limit: 7.0714, 7.1421, ... after two
    # round trips of 7 answers, 7.9412; one more gives 8.0042.
    for _ in range(14):
        limiter.succeeded(limiter.sent(in_flight=7))
    assert limiter.limit == 7
    limiter.succeeded(limiter.sent(in_flight=7))
    assert limiter.limit == 8


def test_at_the_limit_of_the_latest_cut_growth_slows_to_a_probe() -> None:
    limiter = Limiter(start=10, bounds=(2, 64))
    limiter.overloaded(limiter.sent(in_flight=10))  # the service said "too much" at 10

    def successes_until(limit: int) -> int:
        count = 0
        while limiter.limit < limit:
            limiter.succeeded(limiter.sent(in_flight=10))
            count += 1
        return count

    # 7 -> 8 at 0.5 / limit a success: 15 answers (two round trips).
    assert successes_until(8) == 15
    # From 8.5 (85% of 10) on at 0.125 / limit: 8 -> 9 takes 41 answers, 9 -> 10 takes 76
    # (at 0.5 / limit, 17 and 19).
    assert successes_until(9) == 41
    assert successes_until(10) == 76


def test_a_storm_of_429s_is_one_cut_until_something_succeeds() -> None:
    limiter = Limiter(start=20, bounds=(2, 64))
    limiter.overloaded(limiter.sent(in_flight=20), rate_limited=True)
    assert limiter.limit == 14
    # The storm goes on: each request sent after the pause meets a 429 again, no success.
    for _ in range(30):
        assert not limiter.overloaded(limiter.sent(in_flight=2), rate_limited=True)
    assert (limiter.limit, limiter.decreases, limiter.rate_limited) == (14, 1, 31)
    # A 503 is no pacing of the service's own: sent after the cut, it cuts again.
    assert limiter.overloaded(limiter.sent(in_flight=2))
    assert limiter.limit == 9  # floor(14 * 0.7 = 9.8)
    # Once a request sent after the cut succeeds, a new 429 is a new event.
    limiter.succeeded(limiter.sent(in_flight=1))
    assert limiter.overloaded(limiter.sent(in_flight=9), rate_limited=True)
    assert limiter.decreases == 3


def test_a_burst_of_failures_within_one_round_trip_is_one_decrease() -> None:
    limiter = Limiter(start=20, bounds=(2, 64))
    tickets = [limiter.sent(in_flight=n + 1) for n in range(20)]
    # All twenty sent before any answer: every failure among them is one congestion event.
    cuts = [limiter.overloaded(t, rate_limited=True) for t in tickets]
    assert cuts == [True] + [False] * 19
    assert limiter.limit == 14  # 20 * 0.7
    assert (limiter.decreases, limiter.rate_limited) == (1, 20)
    # A request sent after the cut that fails again is a new event: a second cut.
    assert limiter.overloaded(limiter.sent(in_flight=14))
    assert limiter.limit == 9  # floor(14 * 0.7 = 9.8)
    assert limiter.decreases == 2


def test_a_request_sent_before_the_cut_but_answered_after_it_does_not_cut_again() -> None:
    limiter = Limiter(start=10, bounds=(2, 64))
    early = limiter.sent(in_flight=1)
    first = limiter.sent(in_flight=2)
    limiter.overloaded(first)
    late = limiter.sent(in_flight=1)
    assert not limiter.overloaded(early)
    assert limiter.overloaded(late)
    assert limiter.limit == 4  # 10 -> 7 -> 4.9


def test_the_limit_stays_within_its_bounds() -> None:
    limiter = Limiter(start=3, bounds=(2, 5))
    for _ in range(20):
        limiter.succeeded(limiter.sent(in_flight=5))
    assert limiter.limit == 5
    for _ in range(10):
        limiter.overloaded(limiter.sent(in_flight=5))
    assert limiter.limit == 2
    assert limiter.decreases == 2  # 5 -> 3.5 -> 2.45 -> 2 (the floor): 5, 3, 2, then no cut
    assert Limiter(start=100, bounds=(2, 64)).limit == 64
    assert Limiter(start=0, bounds=(2, 64)).limit == 2


def test_no_growth_when_the_limit_is_not_in_use() -> None:
    limiter = Limiter(start=16, bounds=(2, 64))
    for _ in range(50):  # one request at a time: says nothing about capacity
        limiter.succeeded(limiter.sent(in_flight=1))
    assert limiter.limit == 16
    limiter.succeeded(limiter.sent(in_flight=8))  # half of 16 in flight: in use
    assert limiter.limit == 17


def test_a_pinned_limit_never_moves_but_counts_429s_and_pauses() -> None:
    limiter = Limiter.pinned(4)
    for _ in range(10):
        limiter.succeeded(limiter.sent(in_flight=4))
    assert not limiter.overloaded(limiter.sent(in_flight=4), rate_limited=True)
    limiter.paused(1.5)
    assert limiter.figures() == LimiterFigures(
        start=4, peak=4, end=4, decreases=0, rate_limited=1, paused_seconds=1.5, pinned=True
    )
    assert limiter.figures().short() == "limit 4 (pinned, 1 rate-limited, paused 1.5s)"


def test_figures_tell_start_peak_end_cuts_429s_and_pause() -> None:
    limiter = Limiter(start=8, bounds=(2, 64))
    for _ in range(8):
        limiter.succeeded(limiter.sent(in_flight=8))  # slow start: 16
    limiter.overloaded(limiter.sent(in_flight=16), rate_limited=True)  # 11.2
    limiter.paused(1.0)
    figures = limiter.figures()
    assert (figures.start, figures.peak, figures.end) == (8, 16, 11)
    assert (figures.decreases, figures.rate_limited, figures.paused_seconds) == (1, 1, 1.0)
    assert figures.short() == "limit 8→16→11 (1 cut, 1 rate-limited, paused 1.0s)"


@pytest.mark.parametrize(
    ("bounds", "backoff"), [((0, 4), 0.7), ((5, 4), 0.7), ((2, 4), 1.0), ((2, 4), 0.0)]
)
def test_bad_settings_are_refused(bounds: tuple[int, int], backoff: float) -> None:
    with pytest.raises(ValueError, match="limiter"):
        Limiter(start=3, bounds=bounds, backoff=backoff)
