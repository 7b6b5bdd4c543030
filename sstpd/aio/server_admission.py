"""The registry's state and its door: settings, users, session ids, admission.

``ServerAdmission`` is the base of ``aio.server.Server`` (the session registry). It holds
everything the registry keeps (set up in ``__init__``), takes a reload's settings
(``apply``), reads the users file, numbers sessions, and is the ``listener.Gate`` before
TLS: the pre-authentication budget, the file-descriptor reserve, the heap trimming after a
flood, and the refusal of a new connection once TLS is up (stopping, draining,
``max_sessions``). With ``server.workers`` it also installs the hook that tells the
supervisor each Interim-Update's traffic. It is separate because admission happens before
any login or address: ``aio.server_logins`` (logins, limits, the supervisor's registry) and
``aio.server`` (addresses, routing, forget) build on it.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from sstpd import users
from sstpd.aio.aaa import Aaa, SessionHost
from sstpd.aio.heap import SESSION_TRIM_HIGH, SESSION_TRIM_SETTLE, HeapTrimmer
from sstpd.aio.listener import Pending
from sstpd.aio.moderation import ReadModerator
from sstpd.aio.settings import RuntimeSettings
from sstpd.aio.stats import Stats
from sstpd.config import Config
from sstpd.proto.guard import AuthThrottle, PendingBudget
from sstpd.proto.outcome import Outcome
from sstpd.proto.pool import AddressPool
from sstpd.proto.pool6 import PrefixPool
from sstpd.proto.sstp.constants import HashProtocol

if TYPE_CHECKING:
    from sstpd.aio.connection import ServerProtocol
    from sstpd.aio.workers import WorkerRole
    from sstpd.aio.workers_link import RegistryLink

FD_RESERVE = 64  # file descriptors kept free for the TUN, the control socket, reloads


def read_users(path: str) -> dict[str, users.User]:
    return users.load_users(path) if os.path.exists(path) else {}


class ServerAdmission:
    """The registry's state, settings and users, and admission (``listener.Gate``)."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        nofile: int,
        boot_id: str,
        role: WorkerRole | None = None,
        pool: AddressPool | None = None,
        pool6: PrefixPool | None = None,
        shared: RegistryLink | None = None,
    ) -> None:
        """``role``: one of several worker processes (``aio.workers``; None: the only
        process), with ``pool`` and ``pool6`` its slices of the address and prefix pools
        and ``shared`` its link to the supervisor's registry, which keeps
        ``auth.max_sessions_per_user`` and the failed-login throttle across the workers
        (``sstpd.proto.registry``)."""
        config = settings.config
        self.settings = settings
        self.role = role
        self.loop = asyncio.get_running_loop()
        tc, lc = config.tunnel, config.limits
        self.pool = pool or AddressPool(tc.pool, exclude=tc.reserved_addresses())
        self.pool6: PrefixPool | None = pool6
        if pool6 is None and tc.ipv6_pool is not None:
            exclude6 = [tc.ipv6_address] if tc.ipv6_address is not None else []
            self.pool6 = PrefixPool(tc.ipv6_pool, exclude=exclude6)
        self.budget = PendingBudget(lc.pending_total, lc.pending_per_source)
        # RSS back to baseline after a flood; without the full collection when many
        # sessions are live: it would stall the loop (~0.45 s at 10,000 sessions) after
        # every burst of handshakes
        self.heap = HeapTrimmer.for_this_process(
            collect_if=lambda: self.authenticated_count < SESSION_TRIM_HIGH
        )
        # ... and after many sessions closed (a drain, a mass disconnect)
        self.session_heap = HeapTrimmer.for_this_process(
            high=SESSION_TRIM_HIGH, fraction=0.5, settle=SESSION_TRIM_SETTLE, what="sessions"
        )
        self._heap_timer: asyncio.TimerHandle | None = None
        self.throttle = AuthThrottle(settings.throttle)  # one process; workers: ``shared``
        self.shared = shared
        self.blocked_sources: dict[str, float] = {}  # workers: blocks pushed by the supervisor
        self._tasks: set[asyncio.Task[None]] = set()
        self.nofile = nofile
        self.authenticated_count = 0
        self.users: dict[str, users.User] = {}
        self.set_users(read_users(str(config.auth.users_file)))
        self.boot_id = boot_id
        self.aaa = Aaa(config, self.lookup, boot_id)
        # Accounting-On/-Off speak for the whole NAS: only the first worker, once
        self.aaa.announce = role is None or (role.index == 0 and role.generation == 0)
        if shared is not None:
            self.aaa.on_interim = self._traffic
        self.connections: set[ServerProtocol] = set()
        self.by_ip: dict[bytes, ServerProtocol] = {}
        self.by_prefix6: dict[bytes, ServerProtocol] = {}  # first 8 bytes of the /64
        self.peer_iids: set[bytes] = set()  # IPV6CP identifiers of open IPv6 sessions
        self.stopping = False
        self.draining = False
        self.stopped = asyncio.Event()  # set once stopping and the last session is gone
        self._ids = 0
        self.stats = Stats()
        tc = config.tunnel
        self.moderator = ReadModerator(
            self.loop, tc.read_moderation_bytes, tc.read_moderation_delay
        )

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    def cert_hashes(self) -> dict[HashProtocol, bytes]:
        return self.settings.cert_hashes

    def apply(self, settings: RuntimeSettings, user_map: dict[str, users.User]) -> None:
        """A reload: new sessions get ``settings``; pending connections keep their slot and
        deadline, the failed-login throttle its counters (docs in ``aio.reload``)."""
        config = settings.config
        self.settings = settings
        self.set_users(user_map)
        self.aaa.reconfigure(config)
        self.budget.total = config.limits.pending_total
        self.budget.per_source = config.limits.pending_per_source
        self.throttle.config = settings.throttle
        tc = config.tunnel
        self.moderator.configure(tc.read_moderation_bytes, tc.read_moderation_delay)

    # ------------------------------------------------------------ sessions
    def next_id(self) -> int:
        self._ids += 1
        return self._ids if self.role is None else self.role.session_id(self._ids)

    def set_users(self, user_map: dict[str, users.User]) -> None:
        self.users = user_map
        self.pool.set_reserved(u.address for u in user_map.values() if u.address)
        if self.pool6 is not None:
            self.pool6.set_reserved(u.ipv6_prefix for u in user_map.values() if u.ipv6_prefix)

    def lookup(self, name: str) -> bytes | None:
        u = self.users.get(name)
        return u.nt_hash if u is not None else None

    # ------------------------------------------------------------ admission (listener.Gate)
    @property
    def setup_timeout(self) -> float:
        return self.config.limits.setup_timeout

    def admit(self, source: str) -> Outcome | None:
        if self.budget.count + self.authenticated_count + FD_RESERVE >= self.nofile:
            return Outcome.LIMIT_FDS
        return self.budget.refusal(source)

    def hold(self, source: str, deadline: float) -> Pending:
        self.budget.add(source)
        self.heap.update(self.budget.count, self.loop.time())
        return Pending(source, deadline)

    def release(self, pending: Pending) -> None:
        if not pending.released:
            pending.released = True
            self.budget.remove(pending.source)
            self._trim_heap()

    def _trim_heap(self) -> None:
        """Return freed heap to the OS once a flood of pending connections has ended or
        many sessions have closed."""
        now = self.loop.time()
        due = [
            t
            for t in (
                self.heap.update(self.budget.count, now),
                self.session_heap.update(self.authenticated_count, now),
            )
            if t is not None
        ]
        if not due or self.stopping:
            return
        if self._heap_timer is not None:
            if self._heap_timer.when() <= min(due):
                return
            self._heap_timer.cancel()
        self._heap_timer = self.loop.call_at(min(due), self._heap_timer_due)

    def _heap_timer_due(self) -> None:
        self._heap_timer = None
        self._trim_heap()

    def count_outcome(self, outcome: Outcome, source: str) -> None:
        self.stats.outcome(outcome)
        self.stats.note_refusal(outcome, source, self.loop.time())

    def refusal(self) -> str:
        """Why a new connection is turned away right after the TLS handshake ("" = it isn't)."""
        if self.stopping:
            return "shutting down"
        if self.draining:
            return "draining"
        if self.authenticated_count >= self.config.server.max_sessions:
            return "max_sessions reached"  # connections still in handshake do not count
        return ""

    def stop_admitting(self) -> None:
        """Shutdown begins: refuse every new connection, no more heap trimming."""
        self.stopping = True
        if self._heap_timer is not None:
            self._heap_timer.cancel()

    # ------------------------------------------------------------ server.workers: traffic
    def _traffic(self, host: SessionHost) -> None:
        """A worker tells the supervisor each Interim-Update's traffic: the last known
        octets of the Stop it sends should this worker die."""
        assert self.shared is not None
        c = host.session.counters
        self.shared.send(
            {
                "op": "traffic",
                "id": host.id,
                "rx_bytes": c.rx_bytes,
                "tx_bytes": c.tx_bytes,
                "rx_packets": c.rx_packets,
                "tx_packets": c.tx_packets,
            }
        )
