"""Admission control: a bounded amount of heavy read work at once in one process.

A histogram of 69 days by minute is 99,000 windows; a page of 1,000 rows may carry 64 MiB of
payloads. Each is legal, and each costs memory and CPU in proportion. Many at once would
take the whole process (and every other tenant's requests) down with them. So each such
request takes `cost` units of a per-process budget before it does its work, and gives them
back when its answer is built. Requests that do not fit wait in arrival order (a large one is
not overtaken for ever by small ones); one that has waited `wait_s` gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from eventsapi.problems import Problem


class Admission:
    def __init__(self, budget: int, wait_s: float) -> None:
        self.budget = budget
        self.wait_s = wait_s
        self.in_use = 0
        self._queue: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @contextlib.asynccontextmanager
    async def take(self, cost: int) -> AsyncIterator[None]:
        cost = max(1, min(cost, self.budget))  # one request larger than the budget runs alone
        if not self._queue and self.in_use + cost <= self.budget:
            self.in_use += cost
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (cost, granted)
            self._queue.append(entry)
            try:
                await asyncio.wait_for(asyncio.shield(granted), self.wait_s)
            except TimeoutError:
                if granted.done():  # granted in the same instant: give it back
                    self._release(cost)
                else:
                    self._queue.remove(entry)
                    self._grant()  # a smaller request behind this one may fit now
                raise Problem(
                    503, "the service is busy with heavy requests; retry later", headers={"Retry-After": "2"}
                ) from None
            except asyncio.CancelledError:
                if granted.done():
                    self._release(cost)
                else:
                    self._queue.remove(entry)
                    self._grant()
                raise
        try:
            yield
        finally:
            self._release(cost)

    def _release(self, cost: int) -> None:
        self.in_use -= cost
        self._grant()

    def _grant(self) -> None:
        while self._queue and self.in_use + self._queue[0][0] <= self.budget:
            cost, granted = self._queue.popleft()
            self.in_use += cost
            granted.set_result(None)
