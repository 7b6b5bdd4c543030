"""The session registry: who is connected, with which address, and who may come in.

One ``Server`` per daemon. It admits connections (the pre-authentication budget, the
file-descriptor reserve: ``listener.Gate``), builds each connection's sans-I/O
``ServerSession`` from the current ``RuntimeSettings``, counts logins against
``max_sessions`` and the per-user limit, hands out pool addresses and IPv6 /64s, routes by
tunnel address (``by_ip``) and by /64 (``by_prefix6``, both read by the TUN pump) and
forgets a session exactly once when it ends.
The connections themselves are ``aio.connection.ServerProtocol``; listeners, TUN and
signals belong to ``aio.daemon``, control commands and reload to ``aio.admin``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from ipaddress import IPv4Address, IPv6Network
from typing import TYPE_CHECKING, Any

from sstpd import users
from sstpd.aio.aaa import Aaa, SessionHost
from sstpd.aio.heap import SESSION_TRIM_HIGH, SESSION_TRIM_SETTLE, HeapTrimmer
from sstpd.aio.listener import Pending
from sstpd.aio.moderation import ReadModerator
from sstpd.aio.settings import RuntimeSettings
from sstpd.aio.stats import Stats
from sstpd.config import Config
from sstpd.proto import aaa
from sstpd.proto.guard import AuthThrottle, PendingBudget
from sstpd.proto.outcome import Outcome
from sstpd.proto.pool import AddressPool
from sstpd.proto.pool6 import SESSION_PREFIXLEN, PrefixPool
from sstpd.proto.ppp.auth.common import Verdict, Verify, VerifyRequest, local_verifier
from sstpd.proto.registry import user_limit
from sstpd.proto.session import ServerSession
from sstpd.proto.sstp.constants import HashProtocol

if TYPE_CHECKING:
    from sstpd.aio.connection import ServerProtocol
    from sstpd.aio.workers import RegistryLink, WorkerRole

log = logging.getLogger("sstpd")

_REFUSE = local_verifier(lambda name: None)  # the answer to a blocked user name
REGISTRY_HOLD = 10.0  # longest a worker holds a login's output for the supervisor's answer
FD_RESERVE = 64  # file descriptors kept free for the TUN, the control socket, reloads


def read_users(path: str) -> dict[str, users.User]:
    return users.load_users(path) if os.path.exists(path) else {}


class Server:
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

    # ------------------------------------------------------------ authentication results
    def auth_failed(self, source: str, user: str, delay: float = 0.0) -> float:
        """Count a failed login; return how long to hold the failure answer. A worker
        tells the supervisor, which counts and blocks for all workers; ``delay`` is what
        the supervisor said a failure would earn before the password was checked."""
        if self.shared is not None:
            self.shared.send({"op": "failed", "source": source, "user": user})
            if delay > 0:
                self.stats.auth_delayed += 1
            return delay
        res = self.throttle.failure(source, user, self.loop.time())
        for what in res.blocked:
            log.warning(
                "blocked %s for %g s after %d failed logins in %g s",
                what,
                self.throttle.config.block_time,
                self.throttle.config.block_after,
                self.throttle.config.window,
            )
        if res.delay > 0:
            self.stats.auth_delayed += 1
        return res.delay

    def authenticated(self, proto: ServerProtocol, user: str) -> None:
        """A login succeeded: the connection leaves the pre-authentication budget and
        counts against max_sessions and the per-user limit from now on."""
        self.release(proto.pending)
        if self.shared is None:
            self.throttle.success(proto.peer_host, user)
        else:
            self.shared.send({"op": "success", "source": proto.peer_host, "user": user})
        if proto.authenticated:
            return  # re-authentication (LCP renegotiation): counted already
        proto.authenticated = True
        self.authenticated_count += 1
        ac = self.config.auth
        if self.authenticated_count > self.config.server.max_sessions:
            self.refuse(proto, "max_sessions reached", Outcome.REFUSED)
        elif self.shared is not None:
            self._shared_login(proto, user)
        elif ac.max_sessions_per_user:
            mine = sorted(
                (
                    p
                    for p in self.connections
                    if p is not proto
                    and p.authenticated
                    and not p.session.closed
                    and p.session.username == user
                ),
                key=lambda p: p.id,
            )
            verdict = user_limit(
                user, [p.id for p in mine], ac.max_sessions_per_user, ac.session_limit_action
            )
            if verdict.refuse:
                self.refuse(proto, verdict.refuse, Outcome.LIMIT_USER)
            for old in mine:
                if old.id in verdict.replace:
                    self.replace(old, user, proto.id)

    def refuse(self, proto: ServerProtocol, why: str, outcome: Outcome) -> None:
        log.warning("[%d] %s refused: %s", proto.id, proto.peer, why)
        proto._set_outcome(outcome)
        self.loop.call_soon(proto.disconnect, why)

    def replace(self, old: ServerProtocol, user: str, by: int) -> None:
        log.info("[%d] %s user %r replaced by session %d", old.id, old.peer, user, by)
        self.loop.call_soon(old.disconnect, "replaced by a newer session")

    # ------------------------------------------------------------ server.workers: shared
    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shared_login(self, proto: ServerProtocol, user: str) -> None:
        """A worker's login counts in the supervisor's registry. With a per-user limit
        the session's output is held until the supervisor has said it may stay."""
        assert self.shared is not None
        msg = {"op": "login", "id": proto.id, "user": user, "source": proto.peer_host}
        if not self.config.auth.max_sessions_per_user:
            self.shared.send(msg)  # counted for a dead worker's release, no question
            return
        proto.hold_output(REGISTRY_HOLD)
        self._spawn(self._ask_login(proto, msg))

    async def _ask_login(self, proto: ServerProtocol, msg: dict[str, Any]) -> None:
        assert self.shared is not None
        answer = await self.shared.ask(msg)
        if not proto.session.closed:
            if answer is None:  # fail closed: see sstpd.aio.workers
                self.refuse(proto, "the supervisor does not answer", Outcome.REFUSED)
            elif answer.get("refuse"):
                self.refuse(proto, str(answer["refuse"]), Outcome.LIMIT_USER)
        proto.release_output()

    def pushed(self, msg: dict[str, Any]) -> None:
        """What the supervisor tells a worker unasked: a block, a session to end."""
        what = msg.get("push")
        now = self.loop.time()
        if what == "block":
            for key in [k for k, until in self.blocked_sources.items() if until <= now]:
                del self.blocked_sources[key]
            self.blocked_sources[str(msg["source"])] = now + float(msg["for"])
        elif what == "kick":
            for p in self.connections:
                if p.id == msg.get("id") and p.authenticated and not p.session.closed:
                    self.replace(p, p.session.username, int(msg.get("by", 0)))

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

    def source_blocked(self, source: str) -> bool:
        now = self.loop.time()
        if self.shared is None:
            return self.throttle.source_blocked(source, now)
        until = self.blocked_sources.get(source)
        return until is not None and until > now

    def _unless_blocked(self, verify: Verify, proto: ServerProtocol) -> Verify:
        """A user name blocked for failed logins is answered like a wrong password,
        without asking the users file or RADIUS. A worker asks the supervisor first (the
        answer comes later, like RADIUS's)."""

        def checked(req: VerifyRequest) -> Verdict | None:
            if self.shared is not None:
                self._spawn(self._ask_then_verify(proto, req, verify))
                return None
            if self.throttle.user_blocked(req.user, self.loop.time()):
                return _REFUSE(req)
            return verify(req)

        return checked

    async def _ask_then_verify(
        self, proto: ServerProtocol, req: VerifyRequest, verify: Verify
    ) -> None:
        assert self.shared is not None
        answer = await self.shared.ask({"op": "check", "source": proto.peer_host, "user": req.user})
        verdict: Verdict | None
        if answer is None:  # fail closed: see sstpd.aio.workers
            verdict = Verdict(False, code=691, reason="the supervisor does not answer")
        else:
            proto.fail_delay = float(answer.get("delay", 0.0))
            verdict = _REFUSE(req) if answer.get("blocked") else verify(req)
            if verdict is None:
                return  # RADIUS: it completes the verification itself
        if proto.session.closed:
            return
        proto.session.complete_verification(req, verdict, self.loop.time())
        proto._after_input()

    # ------------------------------------------------------------ addresses and sessions
    def assign_address(self, name: str, wanted: IPv4Address | None = None) -> IPv4Address | None:
        """``wanted``: Framed-IP-Address from RADIUS (else the users file, else the pool)."""
        u = self.users.get(name)
        if wanted is None and u is not None:
            wanted = u.address
        return self.pool.allocate(wanted)

    def assign_prefix(self, name: str, wanted: IPv6Network | None = None) -> IPv6Network | None:
        """``wanted``: Framed-IPv6-Prefix from RADIUS (else the user's static /64 from the
        users file, else the next free one of the pool); None (IPv4 only for that session)
        when the pool is exhausted or the static prefix is taken or outside
        ``tunnel.ipv6_pool`` (the TUN routes only the pool)."""
        pool = self.pool6
        if pool is None:
            return None
        u = self.users.get(name)
        static = wanted if wanted is not None else u.ipv6_prefix if u is not None else None
        if static is not None and static not in pool:
            log.warning("static IPv6 prefix %s of %r is outside tunnel.ipv6_pool", static, name)
            return None
        prefix = pool.allocate(static)
        if prefix is None:
            why = f"static prefix {static} in use" if static else "IPv6 prefix pool exhausted"
            log.warning("no IPv6 for %r: %s (%d/%d)", name, why, pool.in_use, pool.size)
        return prefix

    def _radius_prefix(self, name: str, grant: aaa.Grant | None) -> IPv6Network | None:
        """The session's /64 when the Access-Accept names one (Framed-IPv6-Prefix): that
        /64 or nothing. A prefix that is malformed, not a /64, outside ``tunnel.ipv6_pool``
        or held by another session refuses IPv6 for the session (IPV6CP Protocol-Reject,
        IPv4 stays up), never another /64 in its place: the RADIUS server's firewall and
        accounting expect exactly the one it sent."""
        if grant is None or (grant.framed_ipv6_prefix is None and not grant.framed_ipv6_malformed):
            return self.assign_prefix(name)
        prefix = grant.framed_ipv6_prefix
        pool = self.pool6
        assert pool is not None
        why = ""
        if prefix is None:
            why = "malformed"
        elif prefix.prefixlen != SESSION_PREFIXLEN:
            why = f"{prefix} is not a /{SESSION_PREFIXLEN}"
        elif prefix not in pool:
            why = f"{prefix} is outside tunnel.ipv6_pool {pool.network}"
        if why:
            log.warning("Framed-IPv6-Prefix for %r: %s; IPv6 refused, IPv4 only", name, why)
            return None
        return self.assign_prefix(name, prefix)

    def new_session(
        self,
        hashes: dict[HashProtocol, bytes] | None = None,
        proto: ServerProtocol | None = None,
    ) -> ServerSession:
        settings = self.settings
        if hashes is None:
            hashes = settings.cert_hashes
        mask = settings.mask_for(hashes)

        def assign(name: str) -> IPv4Address | None:
            grant = proto.grant if proto is not None else None
            framed = grant.framed_ip if grant is not None else None
            if framed is not None and framed not in self.config.tunnel.pool:
                log.warning("Framed-IP-Address %s for %r is outside tunnel.pool", framed, name)
                return None
            return self.assign_address(name, framed)

        def assign6(name: str) -> IPv6Network | None:
            return self._radius_prefix(name, proto.grant if proto is not None else None)

        verify = None
        if proto is not None:
            verify = self._unless_blocked(self.aaa.verifier(proto), proto)
        return ServerSession(
            ppp_config=settings.ppp,
            cert_hashes=hashes,
            hash_protocols=mask,
            verify=verify,
            lookup=self.lookup if proto is None else None,
            assign_address=assign,
            random=os.urandom,
            now=self.loop.time(),
            timeouts=settings.timeouts,
            dhcp_settings=settings.dhcp,
            assign_prefix=assign6 if self.pool6 is not None else None,
            iid_in_use=self.peer_iids.__contains__,
            ipv6=settings.ipv6,
        )

    def opened(self, proto: ServerProtocol, address: IPv4Address | None) -> None:
        """IPCP is up: packets to ``address`` from the TUN go to ``proto`` (None: an
        IPv6-only session, routed by its /64 alone)."""
        if address is not None:
            self.by_ip[address.packed] = proto
        if self.shared is not None:
            grant = proto.grant
            self.shared.send(
                {
                    "op": "opened",
                    "id": proto.id,
                    "acct": proto.acct_session_id,
                    "address": str(address) if address is not None else "",
                    "classes": [c.hex() for c in grant.classes] if grant is not None else [],
                }
            )

    def opened4(self, proto: ServerProtocol, address: IPv4Address) -> None:
        """IPCP opened on a session that opened IPv6-only: ``address`` (allocated, and with
        workers routed to this worker, at authentication) goes to ``proto`` too."""
        self.by_ip[address.packed] = proto
        if self.shared is not None:  # the Stop the supervisor sends should we die
            self.shared.send({"op": "address", "id": proto.id, "address": str(address)})

    def opened6(self, proto: ServerProtocol, prefix: IPv6Network) -> None:
        """IPV6CP is up and the binding verified: the /64 from the TUN goes to ``proto``."""
        self.by_prefix6[prefix.network_address.packed[:8]] = proto
        proto.iid = proto.session.peer_iid
        if proto.iid is not None:
            self.peer_iids.add(proto.iid)
        if self.shared is not None:  # for the Stop the supervisor sends should we die
            iid = proto.iid.hex() if proto.iid is not None else ""
            self.shared.send({"op": "opened6", "id": proto.id, "prefix": str(prefix), "iid": iid})

    def closed6(self, proto: ServerProtocol, prefix: IPv6Network) -> None:
        """IPV6CP went down: stop routing (the /64 stays allocated until the session ends)."""
        key = prefix.network_address.packed[:8]
        if self.by_prefix6.get(key) is proto:
            del self.by_prefix6[key]
        if proto.iid is not None:
            self.peer_iids.discard(proto.iid)
            proto.iid = None

    def forget(self, proto: ServerProtocol) -> None:
        # called at SessionClosed and again at connection_lost: the second call only adds
        # the traffic counted in between
        c = proto.session.counters
        self.stats.add_closed(c, proto.accounted)
        proto.accounted = dataclasses.replace(c)
        if proto.forgotten:
            return
        proto.forgotten = True
        self.connections.discard(proto)
        self.release(proto.pending)
        if proto.authenticated:
            self.authenticated_count -= 1
            self._trim_heap()
            if self.shared is not None:
                self.shared.send({"op": "closed", "id": proto.id})
        addr = proto.session.peer_address
        if addr is not None and self.by_ip.get(addr.packed) is proto:
            del self.by_ip[addr.packed]
        held = proto.session.allocated_address  # from authentication on, IPCP up or not
        if held is not None:
            self.pool.release(held)
        prefix = proto.session.allocated_prefix  # from the Network phase on
        if prefix is not None:
            self.closed6(proto, prefix)
            if self.pool6 is not None:
                self.pool6.release(prefix)
        if self.stopping and not self.connections:
            self.stopped.set()
