"""Properties of the limiter over random request times.

Times are multiples of 1/1024 s so that ``t - 60`` and ``a + 60`` are exact in binary floating
point: the properties are about the algorithm, not about rounding.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.auth import TIERS, TierLimits
from rlm.ratelimit import RateLimiter, SlidingWindow

_SETTINGS = settings(max_examples=100, deadline=None, database=None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _times(max_step_ticks: int, max_size: int, min_size: int = 1) -> st.SearchStrategy[list[float]]:
    """Non-decreasing times: an arbitrary start plus bursts (step 0) and gaps.

    ``min_size`` matters: Hypothesis favours short lists, and a property about a one-hour
    window needs sequences that span more than an hour.
    """
    steps = st.lists(
        st.one_of(st.just(0), st.integers(0, max_step_ticks)),
        min_size=min_size,
        max_size=max_size,
    )

    def build(start: int, ticks: list[int]) -> list[float]:
        out, total = [], 0
        for tick in ticks:
            total += tick
            out.append(start + total / 1024)
        return out

    return st.builds(build, st.integers(0, 10**6), steps)


def _run(times: list[float], tier: TierLimits, cost: int = 1) -> list[float]:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    admitted: list[float] = []
    for t in times:
        clock.now = t
        if limiter.check_and_consume("k", tier, cost).allowed:
            admitted.append(t)
    return admitted


def _max_in_any_window(admitted: list[float], window_s: float) -> int:
    # The busiest half-open window (t - window_s, t] ends at an admission time; admitted is
    # sorted, so two pointers find it in linear time.
    best, start = 0, 0
    for end, t in enumerate(admitted):
        while admitted[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


@_SETTINGS
@given(times=_times(max_step_ticks=10 * 1024, max_size=250, min_size=15))
def test_never_more_than_the_minute_limit_in_any_60s(times: list[float]) -> None:
    tier = TIERS["anonymous"]
    admitted = _run(times, tier)
    assert _max_in_any_window(admitted, 60) <= tier.requests_per_minute


@_SETTINGS
@given(times=_times(max_step_ticks=4 * 1024, max_size=250, min_size=15), cost=st.integers(1, 3))
def test_minute_limit_with_costs(times: list[float], cost: int) -> None:
    tier = TierLimits(requests_per_minute=7, requests_per_hour=10**6, concurrent_agents=0)
    admitted = _run(times, tier, cost)
    assert _max_in_any_window(admitted, 60) * cost <= 7


@_SETTINGS
@given(times=_times(max_step_ticks=600 * 1024, max_size=120, min_size=40))
def test_never_more_than_the_hour_limit_in_any_3600s(times: list[float]) -> None:
    tier = TierLimits(requests_per_minute=50, requests_per_hour=12, concurrent_agents=0)
    admitted = _run(times, tier)
    assert _max_in_any_window(admitted, 3600) <= 12
    assert _max_in_any_window(admitted, 60) <= 50


@_SETTINGS
@given(times=_times(max_step_ticks=10 * 1024, max_size=200, min_size=15))
def test_minute_window_is_exact(times: list[float]) -> None:
    # With the hour out of the way, a request is refused only if the last 60 s are full.
    tier = TierLimits(requests_per_minute=5, requests_per_hour=10**6, concurrent_agents=0)
    clock = FakeClock()
    limiter = RateLimiter(clock)
    admitted: list[float] = []
    for t in times:
        clock.now = t
        in_window = sum(1 for a in admitted if t - 60 < a)
        decision = limiter.check_and_consume("k", tier)
        assert decision.allowed == (in_window < 5)
        if decision.allowed:
            admitted.append(t)


@_SETTINGS
@given(times=_times(max_step_ticks=300 * 1024, max_size=120, min_size=20))
def test_retry_after_is_honest(times: list[float]) -> None:
    # At the first refusal, waiting exactly retry_after_s makes the same request fit, and not
    # a tick sooner. A burst of one more than the minute limit at the last instant forces a
    # refusal, so no example passes without reaching the check.
    tier = TierLimits(requests_per_minute=4, requests_per_hour=9, concurrent_agents=0)
    clock = FakeClock()
    limiter = RateLimiter(clock)
    burst = [times[-1]] * (tier.requests_per_minute + 1)
    refusal = None
    for t in times + burst:
        clock.now = t
        decision = limiter.check_and_consume("k", tier)
        if not decision.allowed:
            refusal = (t, decision)
            break
    assert refusal is not None, "the burst was never refused"
    t, decision = refusal
    assert 0 < decision.retry_after_s <= decision.window_s + 60
    assert int(decision.headers()["Retry-After"]) >= 1
    clock.now = t + decision.retry_after_s - 1 / 1024
    assert not limiter.peek("k", tier).allowed
    clock.now = t + decision.retry_after_s
    assert limiter.peek("k", tier).allowed


@_SETTINGS
@given(
    shape=st.sampled_from([(60.0, 1.0), (600.0, 10.0), (3600.0, 60.0)]),
    data=st.data(),
)
def test_bucketed_window_never_undercounts(shape: tuple[float, float], data: st.DataObject) -> None:
    window, granularity = shape
    # Steps of up to window/5 so that sequences regularly span several windows.
    times = data.draw(_times(max_step_ticks=int(window / 5 * 1024), max_size=70, min_size=40))
    costs = data.draw(st.lists(st.integers(1, 5), min_size=len(times), max_size=len(times)))
    counter = SlidingWindow(window, granularity)
    for end, (t, cost) in enumerate(zip(times, costs, strict=True)):
        counter.add(t, cost)
        seen = range(end + 1)
        exact = sum(costs[i] for i in seen if t - window < times[i])
        padded = sum(costs[i] for i in seen if t - window - granularity < times[i])
        assert exact <= counter.used(t) <= padded
