"""The supervisor's periodic refresh (sstpd.aio.refresh) with fake workers: one refresh
per live worker per tick, never two outstanding for one worker, and what a refresh keeps."""

from __future__ import annotations

import asyncio
from typing import Any

from sstpd.aio.refresh import REFRESH_INTERVAL, Refresher, refresh_worker
from sstpd.records_link import SessionTraffic
from tests.unit.test_shared_limits import _stats_answer


class FakeWorker:
    def __init__(self, index: int, alive: bool = True) -> None:
        self.index = index
        self.alive = alive
        self.generation = 0
        self.last_stats: Any = None
        self.requests: list[str] = []
        self.answers: dict[str, dict[str, Any] | None] = {}
        self.gate: asyncio.Event | None = None  # set: the answer comes; None: at once
        self.on_answer: Any = None  # called before answering (a death, a restart)

    async def call(self, req: dict[str, Any]) -> dict[str, Any] | None:
        self.requests.append(req["cmd"])
        if self.gate is not None:
            await self.gate.wait()
        if self.on_answer is not None:
            self.on_answer()
        return self.answers.get(req["cmd"])


class FakeShared:
    def __init__(self) -> None:
        self.rows: list[list[SessionTraffic]] = []

    def traffic(self, rows: list[SessionTraffic]) -> None:
        self.rows.append(rows)


def test_the_interval_bounds_what_a_crash_loses() -> None:
    assert 1.0 <= REFRESH_INTERVAL <= 60.0


def test_one_refresh_per_live_worker_and_never_two_outstanding() -> None:
    async def go() -> None:
        workers = [FakeWorker(0), FakeWorker(1), FakeWorker(2, alive=False)]
        hung = asyncio.Event()
        workers[1].gate = hung  # worker 1 does not answer (until set)
        tasks: list[asyncio.Task[None]] = []
        r = Refresher(
            workers,
            lambda w: refresh_worker(w, FakeShared(), False),
            lambda c: tasks.append(asyncio.ensure_future(c)),
        )
        r.tick()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [w.requests for w in workers] == [["stats"], ["stats"], []]  # not the dead one
        assert r.running == {1} and r.started == 2
        for _ in range(5):  # worker 1 still hung: no request piles up behind the first
            r.tick()
            await asyncio.sleep(0)
        assert workers[0].requests == ["stats"] * 6
        assert workers[1].requests == ["stats"] and r.skipped == 5
        hung.set()
        await asyncio.gather(*tasks)
        assert r.running == set()
        r.tick()  # answered: asked again at the next tick
        await asyncio.gather(*tasks)
        assert workers[1].requests == ["stats", "stats"]

    asyncio.run(go())


def test_a_failing_refresh_does_not_block_the_next() -> None:
    async def go() -> None:
        w = FakeWorker(0)

        async def boom(_: Any) -> None:
            raise OSError("link gone")

        tasks: list[asyncio.Task[None]] = []
        r = Refresher([w], boom, lambda c: tasks.append(asyncio.ensure_future(c)))
        r.tick()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert r.running == set()
        r.tick()
        assert r.started == 2 and r.skipped == 0
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())


def test_run_ticks_every_interval_until_stopping() -> None:
    async def go() -> None:
        w = FakeWorker(0)
        stop = False
        r = Refresher([w], lambda w: refresh_worker(w, FakeShared(), False),
                      lambda c: asyncio.ensure_future(c), interval=0.01)  # fmt: skip
        task = asyncio.ensure_future(r.run(lambda: stop))
        while r.started < 3:
            await asyncio.sleep(0.01)
        stop = True
        await asyncio.wait_for(task, 1.0)  # returns by itself
        n = r.started
        await asyncio.sleep(0.05)
        assert r.started == n

    asyncio.run(go())


def test_refresh_keeps_the_stats_answer_and_with_accounting_the_traffic() -> None:
    async def go() -> None:
        w = FakeWorker(1)
        shared = FakeShared()
        w.answers = {
            "stats": _stats_answer(rx_bytes=4321, sessions=1),
            "traffic": {"ok": True, "traffic": [[7, 1234, 99, 3, 2]]},
        }
        await refresh_worker(w, shared, False)  # no accounting: no traffic request
        assert w.requests == ["stats"] and w.last_stats.rx_bytes == 4321
        assert shared.rows == []
        await refresh_worker(w, shared, True)
        assert w.requests == ["stats", "stats", "traffic"]  # not the full sessions rows
        assert shared.rows == [[SessionTraffic(7, 1234, 99, 3, 2)]]  # typed rows
        assert shared.rows[0][0].tx_bytes == 99

        # no answer (timed out, not running): the last one stays
        w.answers = {}
        await refresh_worker(w, shared, True)
        assert w.last_stats.rx_bytes == 4321 and len(shared.rows) == 1

        # an answer that is not a traffic answer: logged, and not passed on
        w.answers = {"traffic": {"ok": True, "traffic": [[7, 1, 2, 3]]}}
        await refresh_worker(w, shared, True)
        assert len(shared.rows) == 1

    asyncio.run(go())


def test_an_answer_from_before_a_restart_is_not_kept() -> None:
    async def go() -> None:
        w = FakeWorker(0)
        shared = FakeShared()
        w.answers = {
            "stats": _stats_answer(rx_bytes=10),
            "traffic": {"ok": True, "traffic": [[1, 2, 3, 4, 5]]},
        }

        def restarted() -> None:  # it died and came back while the request was out
            w.generation += 1

        w.on_answer = restarted
        await refresh_worker(w, shared, True)
        assert w.last_stats is None and shared.rows == []

        def died() -> None:
            w.alive = False

        w.on_answer = died
        w.alive = True
        await refresh_worker(w, shared, True)
        assert w.last_stats is None and shared.rows == []

    asyncio.run(go())
