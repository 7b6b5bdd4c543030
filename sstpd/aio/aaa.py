"""Authentication backends and RADIUS accounting for the daemon's sessions.

:class:`Aaa` gives each session a ``verify`` callable (``auth.Verify``) that walks
``auth.backends`` in order: the users file answers at once for the users it lists;
RADIUS answers later, and the answer is delivered to the session with
``complete_verification`` followed by the usual output flush. The Access-Accept's
authorization (Framed-IP-Address, Session-/Idle-Timeout, Class, Acct-Interim-Interval)
is stored on the session's protocol object as ``grant``; a Delegated-IPv6-Prefix in it is
not applied (no DHCPv6 prefix delegation) and says so in one warning.

Accounting: Start when the tunnel opens, Interim-Update every ``radius.interim_interval``
(or Acct-Interim-Interval from the Accept), Stop with the terminate cause when it closes;
every record after IPV6CP opened carries Framed-IPv6-Prefix and Framed-Interface-Id;
Stops of all open sessions are sent (and awaited, bounded) at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Protocol

from sstpd.aio.radius import RadiusClient, RadiusTimeout
from sstpd.config import Config
from sstpd.proto import aaa, radius
from sstpd.proto.ppp.auth.common import Verdict, Verify, VerifyRequest, local_verifier
from sstpd.proto.session import Counters, ServerSession

log = logging.getLogger("sstpd")

# the reasons the session layer gives for a close the client caused
_USER_REQUEST = ("peer disconnected", "terminated by peer", "PPP terminated", "peer aborted")
_LOST_CARRIER = ("connection lost", "peer silent")


def terminate_cause(reason: str) -> int:
    """Acct-Terminate-Cause for a close reason we did not cause ourselves."""
    if reason.startswith(_USER_REQUEST):
        return radius.TERMINATE_USER_REQUEST
    if reason.startswith(_LOST_CARRIER):
        return radius.TERMINATE_LOST_CARRIER
    return radius.TERMINATE_NAS_ERROR


class SessionHost(Protocol):
    """What Aaa needs of the daemon's per-connection protocol object."""

    id: int
    peer: str
    peer_host: str
    session: ServerSession
    grant: aaa.Grant | None
    acct_session_id: str
    prefix6: IPv6Network | None  # the /64 once IPV6CP opened (kept for the Stop)
    interface_id6: bytes | None  # the peer's IPV6CP interface identifier then
    terminate_cause: int | None  # set when the server ends the session on purpose

    def _after_input(self) -> None: ...
    def disconnect(self, reason: str) -> None: ...


@dataclass
class _Live:
    """Timers and counters of one open session."""

    opened: float
    handles: list[asyncio.TimerHandle] = field(default_factory=list)
    last_bytes: int = -1
    last_active: float = 0.0


class Aaa:
    def __init__(
        self, config: Config, lookup: Callable[[str], bytes | None], boot_id: str = "sstpd"
    ) -> None:
        self.config = config
        self.boot_id = boot_id
        rc = config.radius
        self.lookup = lookup
        self.local = local_verifier(lookup)
        self.nas = aaa.NasInfo(rc.nas_identifier, rc.nas_ip_address)
        self.auth_client: RadiusClient | None = None
        self.acct_client: RadiusClient | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.live: dict[SessionHost, _Live] = {}
        self.loop = asyncio.get_running_loop()
        self.announce = True  # send Accounting-On/-Off (one worker of several does)
        # called with each Interim-Update's session (a worker tells its supervisor the
        # traffic, for the Stop it sends should the worker die)
        self.on_interim: Callable[[SessionHost], None] | None = None

    async def open(self) -> None:
        """Open the clients the configuration needs and that are not open yet."""
        rc = self.config.radius
        if "radius" in self.config.auth.backends and rc.servers and self.auth_client is None:
            client = RadiusClient(rc, rc.servers, "authentication")
            await client.open()
            self.auth_client = client
        if rc.accounting_servers and self.acct_client is None:
            client = RadiusClient(rc, rc.accounting_servers, "accounting")
            await client.open()
            self.acct_client = client
            self.nas_status(aaa.ACCT_ON)

    def nas_status(self, status: int) -> asyncio.Task[None] | None:
        """Accounting-On at start, Accounting-Off at shutdown (RFC 2866): the accounting
        server may close every session it still holds open for this NAS."""
        if self.acct_client is None or not self.announce:
            return None
        boot = f"{self.boot_id}-nas"
        what = "Accounting-On" if status == aaa.ACCT_ON else "Accounting-Off"

        def make(delay: int) -> aaa.AcctRecord:
            return aaa.AcctRecord(boot, "", status, delay=delay)

        task = self.loop.create_task(self._send_acct(None, make, what))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def reconfigure(self, config: Config) -> None:
        """A reload: new servers, secrets and timers for requests from now on (requests in
        flight finish with the settings they started with)."""
        self.config = config
        rc = config.radius
        self.nas = aaa.NasInfo(rc.nas_identifier, rc.nas_ip_address)
        if self.auth_client is not None:
            if "radius" in config.auth.backends:
                self.auth_client.reconfigure(rc, rc.servers)
            else:
                self.auth_client.close()
                self.auth_client = None
        if self.acct_client is not None:
            if rc.accounting_servers:
                self.acct_client.reconfigure(rc, rc.accounting_servers)
            else:
                self.acct_client.close()
                self.acct_client = None
        self._spawn(self.open())
        for c in (self.auth_client, self.acct_client):
            if c is not None:
                self._spawn(c.open())  # a socket for a new address family, if any

    def close(self) -> None:
        for c in (self.auth_client, self.acct_client):
            if c is not None:
                c.close()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------ authentication
    def verifier(self, host: SessionHost) -> Verify:
        backends = self.config.auth.backends

        def verify(req: VerifyRequest) -> Verdict | None:
            for backend in backends:
                if backend == "users":
                    if self.lookup(req.user) is not None or backends[-1] == "users":
                        return self.local(req)
                elif backend == "radius" and self.auth_client is not None:
                    self._spawn(self._radius_verify(host, req))
                    return None
            return self.local(req)  # no backend knows the user: fails like a wrong password

        return verify

    async def _radius_verify(self, host: SessionHost, req: VerifyRequest) -> None:
        client = self.auth_client
        assert client is not None
        try:
            answer, req_auth, server = await client.request(
                lambda ident, auth, secret, _delay: aaa.access_request(
                    req,
                    identifier=ident,
                    authenticator=auth,
                    secret=secret,
                    nas=self.nas,
                    calling_station=host.peer_host,
                ),
                f"Access-Request for {req.name!r}",
            )
            verdict, got = aaa.interpret(req, answer, server.secret, req_auth)
        except RadiusTimeout as e:
            backends = self.config.auth.backends
            fallback = "users" in backends[backends.index("radius") :]
            if fallback and self.lookup(req.user) is not None:
                log.warning("[%d] %s %s; the users file decides", host.id, host.peer, e)
                verdict = self.local(req)
            else:
                log.error("[%d] %s RADIUS: %s", host.id, host.peer, e)
                verdict = Verdict(False, code=691, reason=str(e))
        except asyncio.CancelledError:
            # the client was closed under the request (a reload dropped RADIUS, shutdown)
            verdict = Verdict(False, code=691, reason="RADIUS request abandoned")
        else:
            if got.reply_message:
                text = got.reply_message
                log.info("[%d] %s RADIUS Reply-Message: %s", host.id, host.peer, text)
            if verdict.success:
                log.info("[%d] %s RADIUS Access-Accept for %r", host.id, host.peer, req.name)
                note = aaa.delegated_note(got)
                if note is not None:  # once per session: its one Accept
                    log.warning("[%d] %s RADIUS Access-Accept: %s", host.id, host.peer, note)
                host.grant = got
            else:
                log.warning(
                    "[%d] %s RADIUS %s for %r",
                    host.id, host.peer, verdict.reason, req.name,
                )  # fmt: skip
        if host.session.closed:
            return
        host.session.complete_verification(req, verdict, self.loop.time())
        host._after_input()

    # ------------------------------------------------------------ accounting
    def _record(
        self, host: SessionHost, status: int, duration: float, cause: int | None = None
    ) -> Callable[[int], aaa.AcctRecord]:
        s = host.session
        c: Counters = s.counters
        grant = host.grant
        snapshot = (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets)
        prefix6 = host.prefix6
        iid6 = host.interface_id6 if prefix6 is not None else None

        def make(delay: int) -> aaa.AcctRecord:
            return aaa.AcctRecord(
                host.acct_session_id,
                s.username,
                status,
                session_time=int(duration),
                input_octets=snapshot[0],
                output_octets=snapshot[1],
                input_packets=snapshot[2],
                output_packets=snapshot[3],
                framed_ip=s.peer_address,
                framed_ipv6_prefix=prefix6,
                framed_interface_id=iid6,
                calling_station=host.peer_host,
                classes=grant.classes if grant is not None else (),
                terminate_cause=cause,
                delay=delay,
            )

        return make

    def account(
        self, host: SessionHost, status: int, duration: float, cause: int | None = None
    ) -> asyncio.Task[None] | None:
        if self.acct_client is None:
            return None
        make = self._record(host, status, duration, cause)
        what = {aaa.ACCT_START: "Start", aaa.ACCT_STOP: "Stop"}.get(status, "Interim-Update")
        task = self.loop.create_task(self._send_acct(host, make, what))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _send_acct(
        self, host: SessionHost | None, make: Callable[[int], aaa.AcctRecord], what: str
    ) -> None:
        client = self.acct_client
        assert client is not None
        tag = f"[{host.id}] " if host is not None else ""
        of = f" of {host.acct_session_id}" if host is not None else ""
        try:
            await client.request(
                lambda ident, _auth, secret, delay: aaa.accounting_request(
                    make(delay), identifier=ident, secret=secret, nas=self.nas
                ),
                f"Accounting {what}{of}",
            )
        except RadiusTimeout as e:
            log.error("%saccounting %s lost: %s", tag, what, e)
        except asyncio.CancelledError:
            pass
        else:
            log.debug("%saccounting %s acknowledged", tag, what)

    # ------------------------------------------------------------ session life
    def session_opened(self, host: SessionHost) -> None:
        """Accounting Start; Session-Timeout, Idle-Timeout and interim timers."""
        now = self.loop.time()
        live = self.live[host] = _Live(opened=now, last_active=now)
        self.account(host, aaa.ACCT_START, 0)
        grant = host.grant
        if grant is not None and grant.session_timeout:
            live.handles.append(
                self.loop.call_later(grant.session_timeout, self._expire, host, "session")
            )
        if grant is not None and grant.idle_timeout:
            self._idle_check(host, grant.idle_timeout)
        interval = self.interim_interval(grant)
        if interval:
            live.handles.append(self.loop.call_later(interval, self._interim, host, interval))

    def address_added(self, host: SessionHost) -> None:
        """IPCP opened after an IPv6-only open: an Interim-Update at once, so the RADIUS
        server learns the Framed-IP-Address (the Start had none; the Stop has it too)."""
        live = self.live.get(host)
        if live is not None:
            self.account(host, aaa.ACCT_INTERIM, self.loop.time() - live.opened)

    def _expire(self, host: SessionHost, what: str) -> None:
        if host not in self.live:
            return
        log.info("[%d] %s %s timeout from RADIUS reached", host.id, host.peer, what)
        host.terminate_cause = (
            radius.TERMINATE_SESSION_TIMEOUT if what == "session" else radius.TERMINATE_IDLE_TIMEOUT
        )
        host.disconnect(f"{what} timeout")

    def _idle_check(self, host: SessionHost, idle: int) -> None:
        live = self.live.get(host)
        if live is None:
            return
        c = host.session.counters
        now = self.loop.time()
        total = c.rx_packets + c.tx_packets
        if total != live.last_bytes:
            live.last_bytes, live.last_active = total, now
        if now - live.last_active >= idle:
            self._expire(host, "idle")
            return
        step = min(float(idle), max(1.0, idle / 4))
        live.handles = [h for h in live.handles if h.when() > now]  # drop the fired ones
        live.handles.append(self.loop.call_later(step, self._idle_check, host, idle))

    def _interim(self, host: SessionHost, interval: int) -> None:
        live = self.live.get(host)
        if live is None:
            return
        self.account(host, aaa.ACCT_INTERIM, self.loop.time() - live.opened)
        if self.on_interim is not None:
            self.on_interim(host)
        live.handles.append(self.loop.call_later(interval, self._interim, host, interval))

    def session_closed(self, host: SessionHost, reason: str) -> None:
        """Accounting Stop (only for sessions that opened) and timers off."""
        live = self.live.pop(host, None)
        if live is None:
            return
        for h in live.handles:
            h.cancel()
        cause = host.terminate_cause or terminate_cause(reason)
        self.account(host, aaa.ACCT_STOP, self.loop.time() - live.opened, cause)

    def interim_interval(self, grant: aaa.Grant | None) -> int:
        if self.acct_client is None:
            return 0
        configured = self.config.radius.interim_interval
        if configured:
            return configured
        if grant is not None and grant.interim_interval:
            return max(60, grant.interim_interval)  # RFC 2869 §5.16: not below 60 s
        return 0

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for accounting still in flight, e.g. the Stops at shutdown."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
