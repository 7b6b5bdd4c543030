"""The supervisor of ``server.workers`` worker processes (see ``sstpd.aio.workers``).

It is the process systemd starts: it owns the public control socket, starts each worker
as ``sstpd serve --worker`` with its three socketpairs, restarts a worker that dies (after
``RESTART_DELAY``, doubling up to ``RESTART_DELAY_MAX`` while it keeps dying), answers
control requests by asking every worker and merging their answers, fans SIGTERM and
SIGHUP out, and sends systemd ``READY=1`` once every worker is ready. Its
``sstpd.aio.shared.SharedLimits`` keeps the per-user limit and the failed-login throttle
for all workers, and what a dead worker leaves behind (sessions, counters).

This module holds the process lifecycle (spawn, notify, restart, start, stop, signals).
Four parts live in modules of their own: ``supervisor_worker`` (``Worker``, the handle on
one process, and the fan-out's ``Answers``), ``supervisor_control`` (``SupervisorControl``,
the base class: control requests asked of every worker, the answers merged),
``supervisor_dae`` (with ``radius.dae_listen``, the one listener for Disconnect-Requests,
asking every worker) and ``supervisor_acme`` (the ``[acme]`` manager's site, the
challenge fan-out, and the ``cert`` view).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any

from sstpd.aio.control import ControlServer
from sstpd.aio.notify import sd_notify
from sstpd.aio.shared import SharedLimits
from sstpd.aio.supervisor_acme import SupervisorAcme
from sstpd.aio.supervisor_control import SupervisorControl
from sstpd.aio.supervisor_dae import DaeFanout
from sstpd.aio.supervisor_worker import (
    RESTART_DELAY,
    RESTART_DELAY_MAX,
    STABLE_AFTER,
    Answers,
    Records,
    Worker,
    decode_answer,
    records,
)
from sstpd.aio.workers import (
    ENV_CONTROL_FD,
    ENV_NOTIFY_FD,
    ENV_REGISTRY_FD,
    ENV_WORKER,
)
from sstpd.config import Config
from sstpd.control import MAX_RESPONSE

__all__ = [
    "RESTART_DELAY",
    "RESTART_DELAY_MAX",
    "STABLE_AFTER",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Answers",
    "Records",
    "Supervisor",
    "SupervisorControl",
    "Worker",
    "decode_answer",
    "records",
    "supervise",
]

log = logging.getLogger("sstpd")

STOP_TIMEOUT = 20.0  # seconds workers have to disconnect their clients at SIGTERM
START_TIMEOUT = 60.0


class Supervisor(SupervisorControl):
    """The worker processes' lifecycle, on top of ``SupervisorControl``."""

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
