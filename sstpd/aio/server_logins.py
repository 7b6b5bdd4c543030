"""Logins: what the registry does when authentication succeeds or fails.

``ServerLogins`` (on ``ServerAdmission``, the base of ``aio.server.Server``) counts a
login against ``max_sessions`` and ``auth.max_sessions_per_user`` (refusing the new
session or replacing the oldest, ``sstpd.proto.registry.user_limit``) and a failure in the
failed-login throttle, and answers a blocked user name like a wrong password. With
``server.workers`` the limits and the throttle are the supervisor's: a worker asks its
registry (``workers.RegistryLink``) before it checks a password and before a login's
output leaves, failing closed when no answer comes, and takes the supervisor's pushes
(blocks, kicks). It is separate from admission (before TLS) and from addresses (after
authentication), and keeps the worker side of the shared registry in one place.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sstpd.aio.server_admission import ServerAdmission
from sstpd.proto.outcome import Outcome
from sstpd.proto.ppp.auth.common import Verdict, Verify, VerifyRequest, local_verifier
from sstpd.proto.registry import user_limit

if TYPE_CHECKING:
    from sstpd.aio.connection import ServerProtocol

log = logging.getLogger("sstpd")

_REFUSE = local_verifier(lambda name: None)  # the answer to a blocked user name
REGISTRY_HOLD = 10.0  # longest a worker holds a login's output for the supervisor's answer


class ServerLogins(ServerAdmission):
    """``ServerAdmission`` plus logins: limits, the throttle, the supervisor's registry."""

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
