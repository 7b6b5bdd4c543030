"""The supervisor's periodic refresh of what each worker counted (``server.workers`` > 1).

A worker that dies takes with it whatever it counted since the supervisor last asked:
its ``stats`` counters are kept as of its last ``stats`` answer (``Worker.last_stats``,
folded into ``SharedLimits.retired``), and the Accounting-Stops sent for its sessions
carry the traffic of the last Interim-Update or ``sessions`` answer. Without this, that
is "the last time someone ran ``sstpctl``", which may be hours. ``Refresher`` asks every
live worker every ``REFRESH_INTERVAL`` seconds, so a dead worker loses at most one
interval: one ``stats`` request per worker, plus one ``traffic`` request only when
RADIUS accounting is configured (the sessions' counters are only needed for those Stops;
five integers per session: ``bench/refresh.py`` times it against the full ``sessions``
rows at 10,000 sessions).

At most one refresh per worker is outstanding: a slow or hung worker (each request times
out after ``WORKER_TIMEOUT``) is skipped at the next tick instead of piling requests up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sstpd.aio.workers_link import worker_answer, worker_record
from sstpd.records import StatsRecord
from sstpd.records_link import traffic_from_json

if TYPE_CHECKING:
    from sstpd.aio.shared import SharedLimits
    from sstpd.aio.supervisor_worker import Worker

# A fixed figure, not a setting: it bounds what a crash loses, it is not a policy an
# operator tunes, and the cost is one small JSON request per worker (the RADIUS interim
# interval would not do: it is often absent or ten minutes and more, and it paces the
# RADIUS server's load, not the supervisor's figures).
REFRESH_INTERVAL = 10.0


class Refreshable(Protocol):
    index: int

    @property
    def alive(self) -> bool: ...


class Refresher:
    """Every ``interval`` seconds, ``refresh(w)`` for each live worker ``w`` that has no
    refresh still running."""

    def __init__(
        self,
        workers: Sequence[Refreshable],
        refresh: Callable[[Any], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.workers = workers
        self.refresh = refresh
        self.spawn = spawn  # runs a coroutine in the background (the supervisor's tasks)
        self.interval = interval
        self.running: set[int] = set()  # indexes of the workers with a refresh under way
        self.started = 0  # refreshes started and skipped (a previous one still running)
        self.skipped = 0

    def tick(self) -> None:
        """Start a refresh of every live worker that has none running."""
        for w in self.workers:
            if not w.alive:
                continue
            if w.index in self.running:
                self.skipped += 1
                continue
            self.running.add(w.index)
            self.started += 1
            self.spawn(self._one(w))

    async def _one(self, w: Refreshable) -> None:
        try:
            await self.refresh(w)
        finally:
            self.running.discard(w.index)

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Tick every interval until ``stopping()``."""
        while True:
            await asyncio.sleep(self.interval)
            if stopping():
                return
            self.tick()


async def refresh_worker(w: Worker, shared: SharedLimits, accounting: bool) -> None:
    """Keep worker ``w``'s ``stats`` answer (its counters, should it die) and, with RADIUS
    ``accounting``, its sessions' traffic (for the Stops sent if it dies)."""
    gen = w.generation
    rec = worker_record(StatsRecord, w.index, await w.call({"cmd": "stats"}))
    if rec is not None and w.alive and w.generation == gen:  # not a restarted one's
        w.last_stats = rec
    if accounting:
        rows = worker_answer(traffic_from_json, w.index, await w.call({"cmd": "traffic"}))
        if rows is not None and w.alive and w.generation == gen:
            shared.traffic(rows)
