"""The supervisor of ``server.workers`` worker processes (see ``sstpd.aio.workers``).

It is the process systemd starts: it owns the public control socket, starts each worker
as ``sstpd serve --worker`` with its three socketpairs, restarts a worker that dies (after
``RESTART_DELAY``, doubling up to ``RESTART_DELAY_MAX`` while it keeps dying), answers
control requests by asking every worker and merging their answers, fans SIGTERM and
SIGHUP out, and sends systemd ``READY=1`` once every worker is ready. Its
``sstpd.aio.shared.SharedLimits`` keeps the per-user limit and the failed-login throttle
for all workers, and what a dead worker leaves behind (sessions, counters). Two parts
live in modules of their own: ``supervisor_dae`` (with ``radius.dae_listen``, the one
listener for Disconnect-Requests, asking every worker) and ``supervisor_acme`` (the
``[acme]`` manager's site, the challenge fan-out, and the ``cert`` view).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from sstpd import __version__
from sstpd.aio.control import ControlServer, error
from sstpd.aio.notify import sd_notify
from sstpd.aio.refresh import Refresher, refresh_worker
from sstpd.aio.shared import (
    ADMISSION_COUNTERS,
    COUNTERS,
    GAUGES,
    Counted,
    SharedLimits,
)
from sstpd.aio.stats import Histogram
from sstpd.aio.supervisor_acme import SupervisorAcme
from sstpd.aio.supervisor_dae import DaeFanout
from sstpd.aio.workers import (
    ENV_CONTROL_FD,
    ENV_NOTIFY_FD,
    ENV_REGISTRY_FD,
    ENV_WORKER,
    WORKER_TIMEOUT,
    R,
    worker_record,
)
from sstpd.config import Config, load_config
from sstpd.control import MAX_RESPONSE, encode
from sstpd.errors import SstpdError
from sstpd.records import (
    AdmissionRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    ReloadRecord,
    StatsRecord,
)

log = logging.getLogger("sstpd")

RESTART_DELAY = 1.0  # first wait before restarting a dead worker, doubled up to ...
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0  # ... and back to the first once a worker ran this long
STOP_TIMEOUT = 20.0  # seconds workers have to disconnect their clients at SIGTERM
START_TIMEOUT = 60.0


class Worker:
    """The supervisor's handle on one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = -1
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.notify: socket.socket | None = None
        self.lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self.restarts = 0
        self.started = 0.0
        self.delay = RESTART_DELAY
        self.last_stats: StatsRecord | None = None  # its last stats answer (for retire)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def call(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The worker's answer, or None when it is not running or does not answer."""
        if not self.alive or self.writer is None or self.reader is None:
            return None
        async with self.lock:
            try:
                self.writer.write(encode(req))
                await self.writer.drain()
                line = await asyncio.wait_for(self.reader.readline(), WORKER_TIMEOUT)
            except (OSError, ConnectionError, TimeoutError, ValueError):
                return None
        if not line:
            return None
        try:
            obj = decode_answer(line)
        except ValueError:
            return None
        return obj


# each worker with its answer to one request (None: not running, or no answer)
Answers = list[tuple[Worker, dict[str, Any] | None]]
# ... as its record (None as well: it refused, or the answer is not that record)
Records = list[tuple[Worker, R | None]]


def records(cls: type[R], answers: Answers) -> Records[R]:
    """Each worker's answer as its record (``workers.worker_record``)."""
    return [(w, worker_record(cls, w.index, a)) for w, a in answers]


def decode_answer(line: bytes) -> dict[str, Any]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj


class Supervisor:
    def __init__(self, config: Config, config_path: str | None, count: int) -> None:
        self.config = config
        self.config_path = config_path
        self.count = count
        self.loop = asyncio.get_running_loop()
        self.workers = [Worker(i) for i in range(count)]
        self.control = ControlServer(
            config.server.control_socket, self.handle, config.server.control_group
        )
        self.dae = DaeFanout(self)
        self.stopping = False
        self.draining = False
        self.started_at = self.loop.time()
        self.started_wall = time.time()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.shared = SharedLimits(config)  # per-user limits and the throttle, all workers
        self.acme = SupervisorAcme(self)  # [acme]'s manager runs here; the cert view
        # each worker's counters and traffic, asked every 10 s: what a dead worker keeps
        self.refresher = Refresher(self.workers, self._refresh, self.background)

    # ---------------------------------------------------------------- processes
    async def spawn(self, w: Worker) -> None:
        w.generation += 1
        w.ready.clear()
        ctl_parent, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ntf_parent, ntf_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        reg_parent, reg_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env[ENV_WORKER] = f"{w.index}/{self.count}/{w.generation}"
        env[ENV_CONTROL_FD] = str(ctl_child.fileno())
        env[ENV_NOTIFY_FD] = str(ntf_child.fileno())
        env[ENV_REGISTRY_FD] = str(reg_child.fileno())
        args = [sys.executable, "-m", "sstpd", "serve", "--worker"]
        if self.config_path:
            args += ["--config", self.config_path]
        try:
            w.proc = await asyncio.create_subprocess_exec(
                *args,
                env=env,
                pass_fds=(ctl_child.fileno(), ntf_child.fileno(), reg_child.fileno()),
            )
        except OSError:
            reg_parent.close()
            raise
        finally:
            ctl_child.close()
            ntf_child.close()
            reg_child.close()
        w.started = self.loop.time()
        ctl_parent.setblocking(False)
        w.reader, w.writer = await asyncio.open_unix_connection(sock=ctl_parent, limit=MAX_RESPONSE)
        reg_parent.setblocking(False)
        await self.shared.attach(w.index, w.generation, reg_parent)
        if w.notify is not None:
            self.loop.remove_reader(w.notify.fileno())
            w.notify.close()
        ntf_parent.setblocking(False)
        w.notify = ntf_parent
        self.loop.add_reader(ntf_parent.fileno(), self._notified, w)
        self.background(self._watch(w, w.proc))
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    def _notified(self, w: Worker) -> None:
        assert w.notify is not None
        try:
            data = w.notify.recv(4096).decode(errors="replace")
        except OSError:
            return
        if "READY=1" in data.split("\n"):
            if w.restarts and not self.stopping:
                log.info("worker %d listens again", w.index)
                sd_notify(f"STATUS=listening with {self.count} workers")
            w.ready.set()
            self.acme.worker_ready(w)  # restarted during a validation
            if self.draining:  # a restarted worker follows the daemon's drain state
                self.background(w.call({"cmd": "drain"}))

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task of the supervisor's (cancelled at stop, in _finish)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        rc = await proc.wait()
        if w.writer is not None:
            w.writer.close()
        self.shared.retire(w.last_stats)  # its counters stay in the totals
        w.last_stats = None
        if self.stopping:
            log.info("worker %d exited (%d)", w.index, rc)
            if not any(x.alive for x in self.workers):
                self._stopped.set()
            return
        ran = self.loop.time() - w.started
        if ran >= STABLE_AFTER:
            w.delay = RESTART_DELAY
        how = f"signal {-rc}" if rc < 0 else f"status {rc}"
        log.error(
            "worker %d (pid %d) died (%s) after %.0f s: its sessions are gone; "
            "restarting it in %g s",
            w.index,
            proc.pid,
            how,
            ran,
            w.delay,
        )
        sd_notify(f"STATUS=worker {w.index} restarting")
        await asyncio.sleep(w.delay)
        w.delay = min(w.delay * 2, RESTART_DELAY_MAX)
        if self.stopping:
            return
        w.restarts += 1
        try:
            await self.spawn(w)
        except OSError as exc:
            log.error("restarting worker %d failed: %s", w.index, exc)

    async def run(self) -> int:
        await self.control.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._sighup)
        for w in self.workers:
            if not self.stopping:
                await self.spawn(w)
        ready = self.loop.create_task(self._all_ready())
        dead = self.loop.create_task(self._first_death())
        done, _ = await asyncio.wait(
            [ready, dead],
            timeout=START_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if ready not in done:
            ready.cancel()
            if self.stopping:  # SIGTERM while starting
                await self._finish()
                return 0
            log.error("a worker did not start: stopping")
            self.request_stop()
            await self._finish()
            return 1
        dead.cancel()
        if not self.stopping:
            try:
                await self.dae.open()
            except OSError as exc:
                log.error("cannot listen for Disconnect-Requests: %s: stopping", exc)
                self.request_stop()
                await self._finish()
                return 1
        if not self.stopping:
            try:
                await self.acme.start()  # the http-01 responder binds here, once
            except OSError as exc:
                log.error("ACME: cannot listen for http-01: %s: stopping", exc)
                self.request_stop()
                await self._finish()
                return 1
        sc = self.config.server
        where = ", ".join(f"{a}:{sc.port}" for a in sc.listen)
        log.info("%d workers listening on %s", self.count, where)
        sd_notify(f"READY=1\nSTATUS=listening on {where} with {self.count} workers")
        self.background(self.refresher.run(lambda: self.stopping))
        await self._stopped.wait()
        await self._finish()
        return 0

    async def _all_ready(self) -> None:
        for w in self.workers:
            await w.ready.wait()

    async def _first_death(self) -> None:
        while all(w.alive or w.ready.is_set() for w in self.workers):
            await asyncio.sleep(0.1)

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        sd_notify("STOPPING=1")
        self.acme.close()
        log.info("stopping %d workers", self.count)
        for w in self.workers:
            if w.alive and w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        if not any(w.alive for w in self.workers):
            self._stopped.set()

    async def _finish(self) -> None:
        deadline = self.loop.time() + STOP_TIMEOUT
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                await asyncio.wait_for(w.proc.wait(), max(deadline - self.loop.time(), 0.1))
            except TimeoutError:
                log.warning("worker %d did not stop in time: killing it", w.index)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
        for task in list(self._tasks):
            task.cancel()
        self.shared.close()
        self.dae.close()
        self.control.close()
        log.info("stopped")

    def _sighup(self) -> None:
        self.background(self.handle({"cmd": "reload"}))

    # ---------------------------------------------------------------- control
    async def ask_all(self, req: dict[str, Any]) -> Answers:
        answers = await asyncio.gather(*(w.call(req) for w in self.workers))
        return list(zip(self.workers, answers, strict=True))

    async def _refresh(self, w: Worker) -> None:
        await refresh_worker(w, self.shared, bool(self.config.radius.accounting_servers))

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
            rows = [s for _, a in answers if a and a.get("ok") for s in a["sessions"]]
            self.shared.traffic(rows)  # the last traffic known, for a dead worker's Stops
            return {"ok": True, "sessions": sorted(rows, key=lambda r: int(r["id"]))}
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


def supervise(config: Config, config_path: str | None, count: int) -> int:
    """Run the supervisor of ``count`` workers until SIGTERM; the exit status."""
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> int:
        sup = Supervisor(config, config_path, count)
        return await sup.run()

    result = runner(main())
    return int(result)
