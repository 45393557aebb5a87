"""A clock the test moves, for components that take a clock."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when told; its `sleep` records the wait and returns at once."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        #: Every wait asked of `sleep`, in order.
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
