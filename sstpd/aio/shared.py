"""The supervisor's side of the registry link (``server.workers``; see ``sstpd.aio.workers``).

``SharedLimits`` holds the sans-I/O ``sstpd.proto.registry.Registry`` and serves one link
per worker process: it answers the worker's questions (``check`` before a password is
checked, ``login`` before a login counts against ``auth.max_sessions_per_user``), takes
its reports (``failed``, ``success``, ``opened``, ``traffic`` at each Interim-Update,
``closed``), and pushes to the workers what they must act on (``block``: a source
blocked for failed logins, refused at accept by every worker; ``kick``: a session
replaced by a newer login of its user on another worker).

When a worker's link ends (the process died: the kernel closes its end) the registry
releases the worker's sessions, and with RADIUS accounting configured an
Accounting-Stop (Acct-Terminate-Cause NAS-Error) is sent for each session that had
opened (whose Start the worker sent), with the traffic last known (of the last
Interim-Update or ``sessions`` answer). ``retire`` folds a dead worker's last ``stats``
counters into ``retired``, so the merged totals do not go backwards when it is
restarted. ``sstpd.aio.refresh`` asks for both every 10 s, so that is at most 10 s old.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import typing
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Network
from typing import Any

from sstpd.aio.radius import RadiusClient, RadiusTimeout
from sstpd.aio.settings import throttle_config
from sstpd.aio.workers_link import REGISTRY_LINE
from sstpd.config import Config
from sstpd.control import encode
from sstpd.proto import aaa, radius
from sstpd.proto.guard import AuthThrottle
from sstpd.proto.registry import Held, Registry
from sstpd.records import AdmissionRecord, HistogramRecord, StatsRecord
from sstpd.records_link import SessionTraffic

log = logging.getLogger("sstpd")


def _int_fields(cls: type[object]) -> tuple[str, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in dataclasses.fields(cls) if hints[f.name] is int)  # type: ignore[arg-type]


# the int fields of a worker's ``stats`` answer that are not counters since its start:
# what the workers have now (summed over those answering), or the supervisor's own
GAUGES = frozenset(
    {"sessions", "handshakes_in_progress", "pool_size", "pool_in_use", "pool6_size", "pool6_in_use"}
)
OWN = frozenset({"max_sessions", "workers", "workers_running", "worker_restarts"})
ADMISSION_GAUGES = frozenset(
    {
        "authenticated",
        "pending",
        "pending_sources",
        "pending_total_limit",
        "pending_per_source_limit",
        "open_files_limit",  # the smallest of the workers'
        "auth_blocks",  # the supervisor's own (the workers block nothing themselves)
    }
)
# ... and the counters: every other int field (a new one counts unless listed above)
COUNTERS = tuple(k for k in _int_fields(StatsRecord) if k not in GAUGES | OWN)
ADMISSION_COUNTERS = tuple(k for k in _int_fields(AdmissionRecord) if k not in ADMISSION_GAUGES)


@dataclasses.dataclass(frozen=True)
class Counted:
    """What workers counted since they started (their ``stats`` answers' counters, the
    handshake outcomes and the latency histogram), added up: what ``retire`` keeps of a
    dead worker and what the supervisor's merged ``stats`` sums."""

    values: dict[str, int] = dataclasses.field(default_factory=dict)  # COUNTERS, ADMISSION_
    handshakes: dict[str, int] = dataclasses.field(default_factory=dict)
    latency: HistogramRecord | None = None  # None: nothing counted yet

    @classmethod
    def of(cls, st: StatsRecord) -> Counted:
        values = {k: int(getattr(st, k)) for k in COUNTERS}
        if st.admission is not None:
            values.update({k: int(getattr(st.admission, k)) for k in ADMISSION_COUNTERS})
        return cls(values, dict(st.handshakes), st.handshake_latency)

    def __add__(self, other: Counted) -> Counted:
        def plus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        if self.latency is None or other.latency is None:
            latency = self.latency or other.latency
        else:
            latency = self.latency + other.latency
        handshakes = plus(self.handshakes, other.handshakes)
        return Counted(plus(self.values, other.values), handshakes, latency)


class SharedLimits:
    def __init__(self, config: Config) -> None:
        self.loop = asyncio.get_running_loop()
        self.registry = Registry(AuthThrottle(throttle_config(config)))
        self.config = config
        self.writers: dict[int, asyncio.StreamWriter] = {}  # worker index -> its link
        self.retired = Counted()  # counters of workers that died
        self.acct: RadiusClient | None = None
        self.reconfigure(config)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stops_sent = 0

    def reconfigure(self, config: Config) -> None:
        self.config = config
        ac = config.auth
        self.registry.reconfigure(
            throttle_config(config), ac.max_sessions_per_user, ac.session_limit_action
        )
        if self.acct is not None:
            rc = config.radius
            if rc.accounting_servers:
                self.acct.reconfigure(rc, rc.accounting_servers)
            else:
                self.acct.close()
                self.acct = None

    # ------------------------------------------------------------ links
    async def attach(self, index: int, generation: int, sock: Any) -> None:
        """Serve the link of worker ``index`` (this generation of it) until it ends."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=REGISTRY_LINE)
        self.writers[index] = writer
        # a restarted worker refuses the sources blocked before it started, too
        for source, left in self.registry.throttle.blocked_sources(self.loop.time()).items():
            writer.write(encode({"push": "block", "source": source, "for": left}))
        self._spawn(self._serve(index, generation, reader, writer))

    async def _serve(
        self, index: int, gen: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                    answer = self.handle(index, gen, msg)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("worker %d: bad registry message: %s", index, exc)
                    continue
                if answer is not None and "seq" in msg:
                    writer.write(encode({**answer, "seq": msg["seq"]}))
        except (ConnectionError, OSError, ValueError):
            pass
        writer.close()
        if self.writers.get(index) is writer:
            del self.writers[index]
        self.worker_gone(index, gen)

    def push(self, msg: dict[str, Any], index: int | None = None) -> None:
        """To worker ``index``, or to every worker."""
        for i, writer in self.writers.items():
            if (index is None or i == index) and not writer.is_closing():
                writer.write(encode(msg))

    def handle(self, index: int, gen: int, msg: dict[str, Any]) -> dict[str, Any] | None:
        """One message of worker ``index``: its answer (None: it wants none)."""
        reg = self.registry
        op = msg["op"]
        now = self.loop.time()
        if op == "check":
            c = reg.check(str(msg["source"]), str(msg["user"]), now)
            return {"blocked": c.blocked, "delay": c.delay}
        if op == "failed":
            source = str(msg["source"])
            res = reg.failed(source, str(msg["user"]), now)
            cfg = reg.throttle.config
            for what in res.blocked:
                log.warning(
                    "blocked %s for %g s after %d failed logins in %g s (all workers)",
                    what,
                    cfg.block_time,
                    cfg.block_after,
                    cfg.window,
                )
                if what.startswith("source "):
                    self.push({"push": "block", "source": source, "for": cfg.block_time})
            return None
        if op == "success":
            reg.succeeded(str(msg["source"]), str(msg["user"]))
            return None
        if op == "login":
            sid, user = int(msg["id"]), str(msg["user"])
            verdict = reg.login(index, gen, sid, user, str(msg["source"]))
            for old in verdict.replace:
                held = reg.sessions.get(old)
                if held is not None:
                    self.push({"push": "kick", "id": old, "by": sid}, held.worker)
            if verdict.refuse:
                log.info("worker %d session %d refused: %s", index, sid, verdict.refuse)
            return {"refuse": verdict.refuse}
        if op == "opened":
            classes = tuple(bytes.fromhex(c) for c in msg.get("classes", []))
            reg.opened(int(msg["id"]), now, str(msg["acct"]), str(msg["address"]), classes)
            return None
        if op == "address":
            reg.address(int(msg["id"]), str(msg["address"]))
            return None
        if op == "opened6":
            reg.opened6(int(msg["id"]), str(msg["prefix"]), str(msg.get("iid", "")))
            return None
        if op == "traffic":  # an Interim-Update's figures
            reg.traffic(
                int(msg["id"]),
                int(msg.get("rx_bytes", 0)),
                int(msg.get("tx_bytes", 0)),
                int(msg.get("rx_packets", 0)),
                int(msg.get("tx_packets", 0)),
            )
            return None
        if op == "closed":
            reg.closed(int(msg["id"]))
            return None
        raise ValueError(f"unknown op {op!r}")

    # ------------------------------------------------------------ a worker died
    def worker_gone(self, index: int, gen: int) -> None:
        gone = self.registry.worker_gone(index, gen)
        if not gone:
            return
        users = sorted({h.user for h in gone})
        log.warning(
            "worker %d: released %d sessions of %d users (%s)",
            index,
            len(gone),
            len(users),
            ", ".join(repr(u) for u in users[:10]) + (" ..." if len(users) > 10 else ""),
        )
        opened = [h for h in gone if h.opened is not None and h.acct_session_id]
        if opened and self.config.radius.accounting_servers:
            self._spawn(self._stops(opened))

    async def _stops(self, gone: list[Held]) -> None:
        rc = self.config.radius
        if self.acct is None:
            client = RadiusClient(rc, rc.accounting_servers, "accounting")
            await client.open()
            self.acct = client
        nas = aaa.NasInfo(rc.nas_identifier, rc.nas_ip_address)
        now = self.loop.time()
        await asyncio.gather(*(self._stop(h, now, nas) for h in gone))

    async def _stop(self, h: Held, now: float, nas: aaa.NasInfo) -> None:
        client = self.acct
        assert client is not None and h.opened is not None
        duration = int(now - h.opened)

        def make(ident: int, _auth: bytes, secret: bytes, delay: int) -> Any:
            rec = aaa.AcctRecord(
                h.acct_session_id,
                h.user,
                aaa.ACCT_STOP,
                session_time=duration,
                input_octets=h.rx_bytes,
                output_octets=h.tx_bytes,
                input_packets=h.rx_packets,
                output_packets=h.tx_packets,
                framed_ip=IPv4Address(h.address) if h.address else None,
                framed_ipv6_prefix=IPv6Network(h.prefix6) if h.prefix6 else None,
                framed_interface_id=bytes.fromhex(h.interface_id6) if h.prefix6 else None,
                calling_station=h.source,
                classes=h.classes,
                terminate_cause=radius.TERMINATE_NAS_ERROR,
                delay=delay,
            )
            return aaa.accounting_request(rec, identifier=ident, secret=secret, nas=nas)

        try:
            await client.request(make, f"Accounting Stop of {h.acct_session_id}")
        except RadiusTimeout as e:
            log.error("accounting Stop of %s (dead worker) lost: %s", h.acct_session_id, e)
        else:
            self.stops_sent += 1
            log.info("accounting Stop of %s sent (its worker died)", h.acct_session_id)

    def retire(self, last: StatsRecord | None) -> None:
        """Fold a dead worker's last ``stats`` counters into ``retired``."""
        if last is not None:
            self.retired = self.retired + Counted.of(last)

    # ------------------------------------------------------------ what stats shows
    def traffic(self, rows: Iterable[SessionTraffic]) -> None:
        """The counters of each session in a ``traffic`` answer (for a dead worker's Stops)."""
        for r in rows:
            self.registry.traffic(r.id, r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)

    def throttle_figures(self) -> tuple[int, dict[str, int]]:
        """The throttle's ``auth_blocks`` and ``auth_blocked`` (the workers' own are 0)
        for the merged ``stats``."""
        t = self.registry.throttle
        return t.blocks, t.blocked_count(self.loop.time())

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.acct is not None:
            self.acct.close()
