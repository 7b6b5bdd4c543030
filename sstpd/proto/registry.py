"""What the ``server.workers`` supervisor knows of every worker's logins, sans-I/O.

With several worker processes the limits that span sessions must be counted in one place:
``auth.max_sessions_per_user`` and the failed-login throttle (``guard.AuthThrottle``).
The supervisor holds one :class:`Registry`; the workers tell it every login attempt's
outcome and every session's opening and end (``sstpd.aio.workers_link.RegistryLink``),
and ask it before a password is checked (:meth:`Registry.check`) and before a login counts
(:meth:`Registry.login`). It also remembers what a worker's sessions were, so that when
the worker dies their counts are released and their accounting Stop can be sent
(:meth:`Registry.worker_gone`).

:func:`user_limit` is the per-user policy itself, shared with the single-process daemon
(``aio.server.Server.authenticated``). Time is always an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sstpd.proto.guard import AuthThrottle, Failure, ThrottleConfig

__all__ = ["Check", "Held", "Registry", "UserLimit", "user_limit"]


@dataclass(frozen=True)
class UserLimit:
    """What a login does to ``auth.max_sessions_per_user``."""

    refuse: str = ""  # why the new login is refused ("" = it is not)
    replace: tuple[int, ...] = ()  # the older sessions to end to make room


def user_limit(user: str, others: Sequence[int], limit: int, action: str) -> UserLimit:
    """``others``: the ids of ``user``'s other open sessions, oldest first; ``limit``:
    ``max_sessions_per_user`` (0 = none); ``action``: ``deny`` or ``replace``."""
    excess = len(others) + 1 - limit
    if not limit or excess <= 0:
        return UserLimit()
    if action == "deny":
        return UserLimit(refuse=f"user {user!r} already has {len(others)} sessions")
    return UserLimit(replace=tuple(others[:excess]))


@dataclass(frozen=True)
class Check:
    """The answer before a password is checked."""

    blocked: bool  # the source or the user name is blocked: answer as a wrong password
    delay: float  # how long a failure now would hold its answer


@dataclass
class Held:
    """One logged-in session of a worker, as far as the supervisor knows it."""

    id: int
    worker: int
    generation: int
    user: str
    source: str
    order: int  # login order across all workers (ids are not: each worker numbers its own)
    acct_session_id: str = ""
    address: str = ""  # the tunnel address, once open
    classes: tuple[bytes, ...] = ()  # RADIUS Class attributes to echo in accounting
    prefix6: str = ""  # the /64, once IPV6CP opened (Framed-IPv6-Prefix of the Stop)
    interface_id6: str = ""  # the peer's IPV6CP identifier then, hex (Framed-Interface-Id)
    opened: float | None = None  # when the tunnel opened (None: not yet; no Start was sent)
    rx_bytes: int = 0  # the last traffic figures the supervisor saw (a ``sessions`` answer)
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    leaving: bool = False  # replaced by a newer login: no longer counts for its user


@dataclass
class Registry:
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    max_per_user: int = 0
    action: str = "deny"
    sessions: dict[int, Held] = field(default_factory=dict)
    _order: int = 0

    def reconfigure(self, throttle: ThrottleConfig, max_per_user: int, action: str) -> None:
        """A reload: the throttle keeps its counters, the limit applies to the next login."""
        self.throttle.config = throttle
        self.max_per_user = max_per_user
        self.action = action

    # ------------------------------------------------------------ the throttle
    def check(self, source: str, user: str, now: float) -> Check:
        t = self.throttle
        blocked = t.source_blocked(source, now) or t.user_blocked(user, now)
        return Check(blocked, t.next_delay(source, user, now))

    def failed(self, source: str, user: str, now: float) -> Failure:
        return self.throttle.failure(source, user, now)

    def succeeded(self, source: str, user: str) -> None:
        self.throttle.success(source, user)

    # ------------------------------------------------------------ sessions
    def of_user(self, user: str) -> list[Held]:
        """``user``'s sessions that count against the limit, oldest login first."""
        mine = [h for h in self.sessions.values() if h.user == user and not h.leaving]
        return sorted(mine, key=lambda h: h.order)

    def login(self, worker: int, generation: int, sid: int, user: str, source: str) -> UserLimit:
        """Session ``sid`` of ``worker`` authenticated as ``user``: counted unless refused;
        the sessions in ``replace`` stop counting now (their worker is told to end them)."""
        if sid in self.sessions:  # re-authentication: counted already
            return UserLimit()
        others = self.of_user(user)
        verdict = user_limit(user, [h.id for h in others], self.max_per_user, self.action)
        if verdict.refuse:
            return verdict
        for h in others:
            if h.id in verdict.replace:
                h.leaving = True
        self._order += 1
        self.sessions[sid] = Held(sid, worker, generation, user, source, self._order)
        return verdict

    def opened(
        self,
        sid: int,
        now: float,
        acct_session_id: str,
        address: str,
        classes: tuple[bytes, ...] = (),
    ) -> None:
        h = self.sessions.get(sid)
        if h is not None:
            h.opened, h.acct_session_id, h.address, h.classes = (
                now, acct_session_id, address, classes
            )  # fmt: skip

    def address(self, sid: int, address: str) -> None:
        """IPCP opened after an IPv6-only open: the address the Stop carries."""
        h = self.sessions.get(sid)
        if h is not None:
            h.address = address

    def opened6(self, sid: int, prefix: str, interface_id: str) -> None:
        h = self.sessions.get(sid)
        if h is not None:
            h.prefix6, h.interface_id6 = prefix, interface_id

    def traffic(self, sid: int, rx_bytes: int, tx_bytes: int, rx_pkts: int, tx_pkts: int) -> None:
        h = self.sessions.get(sid)
        if h is not None:
            h.rx_bytes, h.tx_bytes, h.rx_packets, h.tx_packets = (
                rx_bytes,
                tx_bytes,
                rx_pkts,
                tx_pkts,
            )

    def closed(self, sid: int) -> Held | None:
        return self.sessions.pop(sid, None)

    def worker_gone(self, worker: int, generation: int) -> list[Held]:
        """The worker process (this generation of it) ended: its sessions ended with it."""
        gone = [
            h for h in self.sessions.values() if (h.worker, h.generation) == (worker, generation)
        ]
        for h in gone:
            del self.sessions[h.id]
        return sorted(gone, key=lambda h: h.order)

    def count(self, user: str) -> int:
        return len(self.of_user(user))
