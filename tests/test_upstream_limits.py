"""The rate limiter and the circuit breaker as pure logic, on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.pcs import errors
from gateway.pcs.breaker import BreakerState, CircuitBreaker
from gateway.pcs.rate_budget import TokenBucket
from tests.support.clock import FakeClock


async def test_the_bucket_passes_a_burst_then_waits_briefly_then_refuses() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, max_wait=0.25, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.sleeps == []
    assert bucket.waits == 0
    # The clock stands still: the third call waits 0.1 s, the fourth 0.2 s, the fifth would
    # wait 0.3 s, past max_wait, and is refused at once.
    await bucket.acquire()
    await bucket.acquire()
    assert bucket.waits == 2
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    with pytest.raises(errors.Throttled) as refused:
        await bucket.acquire()
    assert refused.value.retry_after_seconds == 1
    assert refused.value.aws_error_code is None
    assert bucket.rejections == 1
    assert clock.sleeps == pytest.approx([0.1, 0.2]), "a refusal does not wait"


async def test_the_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, max_wait=0, clock=clock)
    for _ in range(3):
        await bucket.acquire()
    with pytest.raises(errors.Throttled):
        await bucket.acquire()
    clock.advance(1.0)  # two tokens back
    await bucket.acquire()
    await bucket.acquire()
    with pytest.raises(errors.Throttled):
        await bucket.acquire()
    clock.advance(100)  # never more than the burst
    for _ in range(3):
        await bucket.acquire()
    with pytest.raises(errors.Throttled) as refused:
        await bucket.acquire()
    assert refused.value.retry_after_seconds == 1
    assert bucket.rejections == 3


async def test_retry_after_says_when_a_token_is_due() -> None:
    bucket = TokenBucket(0.25, burst=1, max_wait=0, clock=FakeClock())
    await bucket.acquire()
    with pytest.raises(errors.Throttled) as refused:
        await bucket.acquire()
    assert refused.value.retry_after_seconds == 4


def failures(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        breaker.before_call()
        breaker.failed()


def test_the_breaker_opens_at_the_threshold_of_failures_in_a_row() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, open_seconds=10, clock=clock)
    failures(breaker, 2)
    breaker.before_call()
    breaker.succeeded()  # a success in between starts the count again
    failures(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    failures(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 1
    with pytest.raises(errors.CircuitOpen) as refused:
        breaker.before_call()
    assert refused.value.serve_stale, "an open breaker lets the stale copy serve"
    assert breaker.refused == 1


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, open_seconds=10, clock=clock)
    failures(breaker, 1)
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(errors.CircuitOpen):
        breaker.before_call()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    assert breaker.opened == 1


def test_a_failed_probe_opens_again_and_an_abandoned_one_lets_another_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, open_seconds=5, clock=clock)
    failures(breaker, 2)
    clock.advance(5)
    breaker.before_call()
    breaker.abandoned()  # held back by the rate limit: it never reached PCS
    breaker.before_call()  # so another call may probe
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 2
    clock.advance(4.9)
    with pytest.raises(errors.CircuitOpen):
        breaker.before_call()
