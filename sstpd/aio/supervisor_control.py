"""The supervisor's control side: each request fanned out to the workers, answers merged.

``SupervisorControl`` is the base of ``aio.supervisor.Supervisor``: ``handle`` answers a
control request (from the public control socket, or SIGHUP's ``reload``) by asking every
worker (``ask_all``) and merging their records into one (``merge_health``,
``merge_drain``, ``merge_sessions``, ``merge_stats``: the totals count a dead worker's
last figures and never go backwards); ``reload`` validates the configuration here first
and then has every worker apply it. It is separate from the process lifecycle
(``aio.supervisor``: spawn, restart, signals, stop) because it only reads the state that
class sets up, listed below as annotations.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sstpd import __version__
from sstpd.aio.control import error
from sstpd.aio.shared import (
    ADMISSION_COUNTERS,
    COUNTERS,
    GAUGES,
    Counted,
    SharedLimits,
)
from sstpd.aio.stats import Histogram
from sstpd.aio.supervisor_worker import Answers, Records, Worker, records
from sstpd.aio.workers_link import worker_answer, worker_record
from sstpd.config import Config, load_config
from sstpd.errors import SstpdError
from sstpd.records import (
    AdmissionRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    ReloadRecord,
    SessionRecord,
    StatsRecord,
    sessions_from_json,
    sessions_to_json,
)
from sstpd.records_link import SessionTraffic

if TYPE_CHECKING:
    from sstpd.aio.supervisor_acme import SupervisorAcme
    from sstpd.aio.supervisor_dae import DaeFanout

log = logging.getLogger("sstpd")


class SupervisorControl:
    """Control requests over every worker; the state it reads is ``Supervisor``'s."""

    config: Config
    config_path: str | None
    count: int
    loop: asyncio.AbstractEventLoop
    workers: list[Worker]
    dae: DaeFanout
    acme: SupervisorAcme
    shared: SharedLimits
    stopping: bool
    draining: bool
    started_at: float
    started_wall: float

    async def ask_all(self, req: dict[str, Any]) -> Answers:
        answers = await asyncio.gather(*(w.call(req) for w in self.workers))
        return list(zip(self.workers, answers, strict=True))

    async def ask_stats(self) -> Records[StatsRecord]:
        """Every worker's ``stats``; each one's is kept: what it had counted, should it die."""
        gens = [w.generation for w in self.workers]
        recs = records(StatsRecord, await self.ask_all({"cmd": "stats"}))
        for (w, rec), gen in zip(recs, gens, strict=True):
            if rec is not None and w.alive and w.generation == gen:
                w.last_stats = rec
        return recs

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        if cmd == "renew":
            return self.acme.renew()
        if cmd == "cert":
            return self.acme.merge_cert(await self.ask_all(req))
        if cmd == "reload":
            return await self.reload()
        if cmd in ("drain", "undrain"):
            if self.stopping:
                return error("shutting down")
            self.draining = cmd == "drain"
            drained = self.merge_drain(records(DrainRecord, await self.ask_all(req)))
            return {"ok": True, **drained.to_json()}
        if cmd == "stats":
            return {"ok": True, **self.merge_stats(await self.ask_stats()).to_json()}
        answers = await self.ask_all(req)
        if cmd == "health":
            return {"ok": True, **self.merge_health(records(HealthRecord, answers)).to_json()}
        if cmd == "sessions":
            rows = self.merge_sessions(answers)
            # the last traffic known, for a dead worker's Stops
            self.shared.traffic(
                SessionTraffic(r.id, r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)
                for r in rows
            )
            return {"ok": True, **sessions_to_json(rows)}
        if cmd == "kick":
            kicks = [k for w, a in answers if (k := worker_record(KickRecord, w.index, a))]
            if not kicks:
                errors = [a for _, a in answers if a and not a.get("ok")]
                return errors[0] if errors else error("no worker answers")
            kicked = KickRecord(kicked=tuple(sorted(i for k in kicks for i in k.kicked)))
            return {"ok": True, **kicked.to_json()}
        return error(f"unknown command {cmd!r}")

    async def reload(self) -> dict[str, Any]:
        try:
            if self.config_path:
                self.config = load_config(self.config_path)
        except SstpdError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return error(str(exc))
        self.shared.reconfigure(self.config)
        answers = await self.ask_all({"cmd": "reload"})
        done: list[ReloadRecord] = []
        for w, a in answers:
            rec = worker_record(ReloadRecord, w.index, a)
            if rec is None:
                reason = a.get("error", "failed") if a else "does not answer"
                return error(f"worker {w.index}: {reason}")
            done.append(rec)
        self.dae.reconfigure(self.config.radius)
        self.acme.reloaded()
        # every worker read the same files: the first one's answer, with the count
        return {"ok": True, **replace(done[0], workers=len(done)).to_json()}

    def merge_health(self, recs: Records[HealthRecord]) -> HealthRecord:
        """The worst status of the workers' (an unknown one counts as the worst), the
        addresses left in all their pools, their warnings, and which of them is down."""
        statuses = []
        warnings: list[str] = []
        pool_free = 0
        for w, h in recs:
            if h is None:
                warnings.append(f"worker {w.index} not running (restarting)")
                continue
            statuses.append(h.status)
            pool_free += h.pool_free or 0
            warnings += [f"worker {w.index}: {x}" for x in h.warnings]
        order = HealthRecord.STATUSES
        if self.stopping:
            status = "stopping"
        elif not statuses:
            status = "full"
            warnings.append("no worker is running")
        else:
            status = min(statuses, key=lambda s: order.index(s) if s in order else 0)
        return HealthRecord(
            status=status,
            accepting=status == "ok",
            draining=self.draining,
            pool_free=pool_free,
            warnings=tuple(warnings),
        )

    def merge_sessions(self, answers: Answers) -> list[SessionRecord]:
        """``sessions``: every worker's rows (``sessions_from_json``), by session id; a
        worker that does not answer, refuses or answers something else (logged) has none
        listed, like one that is not running."""
        rows = [s for w, a in answers for s in worker_answer(sessions_from_json, w.index, a) or ()]
        return sorted(rows, key=lambda s: s.id)

    def merge_drain(self, recs: Records[DrainRecord]) -> DrainRecord:
        """``drain``/``undrain``: the merged health, and the sessions all workers keep."""
        health = self.merge_health([(w, d.health if d else None) for w, d in recs])
        return DrainRecord(health=health, sessions=sum(d.sessions or 0 for _, d in recs if d))

    def merge_stats(self, recs: Records[StatsRecord]) -> StatsRecord:
        """The ``stats`` of all workers: counters summed, gauges summed over the workers
        that answered (``open_files_limit``: the smallest), the rest the supervisor's own
        (or, ``tun_offload`` and ``certificate_not_after``, the first worker's)."""
        live = [(w, r) for w, r in recs if r is not None]
        # a worker that did not answer (dying, or slow) counts with its last answer's
        # counters, a dead one with the retired: the totals never go backwards
        silent = [w.last_stats for w, r in recs if r is None and w.last_stats is not None]
        total = Counted()
        for r in [*(r for _, r in live), *silent]:
            total = total + Counted.of(r)
        total = total + self.shared.retired
        first = live[0][1] if live else None
        adm = [r.admission for _, r in live if r.admission is not None]
        blocks, blocked = self.shared.throttle_figures()  # the throttle is the supervisor's
        admission = AdmissionRecord(
            authenticated=sum(a.authenticated for a in adm),
            pending=sum(a.pending for a in adm),
            pending_sources=sum(a.pending_sources for a in adm),
            pending_total_limit=sum(a.pending_total_limit for a in adm),
            pending_per_source_limit=sum(a.pending_per_source_limit for a in adm),
            open_files_limit=min((a.open_files_limit for a in adm), default=0),
            auth_blocks=blocks,
            auth_blocked=blocked,
            **{k: total.values.get(k, 0) for k in ADMISSION_COUNTERS},
        )
        counters = {k: total.values.get(k, 0) for k in COUNTERS}
        acme = self.acme.counts()  # the manager is the supervisor's, not a worker's
        if acme is not None:
            counters["acme_renewals"], counters["acme_renewal_failures"] = acme
        return StatsRecord(
            version=__version__,
            health=self.merge_health([(w, r.health if r else None) for w, r in recs]),
            started_at=round(self.started_wall, 3),
            uptime=round(self.loop.time() - self.started_at, 3),
            max_sessions=self.config.server.max_sessions,
            **{k: sum(int(getattr(r, k)) for _, r in live) for k in GAUGES},
            **counters,
            handshakes=total.handshakes,
            handshake_latency=total.latency or Histogram().record(),
            admission=admission,
            certificate_not_after=first.certificate_not_after if first else None,
            tun_offload=first.tun_offload if first else False,
            workers=self.count,
            workers_running=len(live),
            worker_restarts=sum(w.restarts for w in self.workers),
            worker_sessions={str(w.index): r.sessions for w, r in live},
            # the pids, for operators and tests
            worker_pids={
                str(w.index): w.proc.pid for w in self.workers if w.proc is not None and w.alive
            },
        )
