"""The session registry: who is connected, with which address, and who may come in.

One ``Server`` per daemon. It admits connections (the pre-authentication budget, the
file-descriptor reserve: ``listener.Gate``), builds each connection's sans-I/O
``ServerSession`` from the current ``RuntimeSettings``, counts logins against
``max_sessions`` and the per-user limit, hands out pool addresses and IPv6 /64s, routes by
tunnel address (``by_ip``) and by /64 (``by_prefix6``, both read by the TUN pump) and
forgets a session exactly once when it ends.
The connections themselves are ``aio.connection.ServerProtocol``; listeners, TUN and
signals belong to ``aio.daemon``, control commands and reload to ``aio.admin``.

The class is built in layers, one concern each: ``aio.server_admission.ServerAdmission``
(the state, settings, users and admission), ``aio.server_logins.ServerLogins`` (logins,
limits, the failed-login throttle, the supervisor's registry with workers) and ``Server``
here (addresses and /64s, the sessions' routing tables, forgetting a session).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from ipaddress import IPv4Address, IPv6Network
from typing import TYPE_CHECKING

from sstpd.aio.server_admission import FD_RESERVE, ServerAdmission, read_users
from sstpd.aio.server_logins import REGISTRY_HOLD, ServerLogins
from sstpd.proto import aaa
from sstpd.proto.pool6 import SESSION_PREFIXLEN
from sstpd.proto.session import ServerSession
from sstpd.proto.sstp.constants import HashProtocol

if TYPE_CHECKING:
    from sstpd.aio.connection import ServerProtocol

__all__ = [
    "FD_RESERVE",
    "REGISTRY_HOLD",
    "Server",
    "ServerAdmission",
    "ServerLogins",
    "read_users",
]

log = logging.getLogger("sstpd")


class Server(ServerLogins):
    """The session registry: ``ServerLogins`` plus addresses, routing and ``forget``."""

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
