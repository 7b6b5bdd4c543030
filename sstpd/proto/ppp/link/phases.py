"""``Link``: the Authenticate and Network phases both ends share, on top of ``LinkBase``:
starting an authenticator and taking its result, opening IPCP and IPV6CP, their
callbacks, and closing the link once no NCP runs any more.

Each role (``server.PppServer``, ``client.PppClient``) says which authenticator and which
IPCP handler it starts (``_start_auth``, ``_start_network``).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network

from sstpd.proto.ppp.auth.common import AuthResult
from sstpd.proto.ppp.frame import Protocol
from sstpd.proto.ppp.fsm import FsmHandler, State
from sstpd.proto.ppp.ipcp import IpcpListener
from sstpd.proto.ppp.ipv6cp import Ipv6cpHandler, Ipv6cpListener
from sstpd.proto.ppp.link.base import Auth, LinkBase
from sstpd.proto.ppp.link.events import AuthFailed, AuthSucceeded, Network6Down, Network6Up, Phase


class Link(LinkBase, IpcpListener, Ipv6cpListener):
    """``LinkBase`` plus the phases after LCP: authentication, IPCP, IPV6CP."""

    def _begin_auth(self, auth: Auth, now: float) -> None:
        self.phase = Phase.AUTHENTICATE
        self.auth_method = auth.method
        self._auth = auth
        self._auth_deadline = now + self._cfg.auth_timeout
        auth.start(now)

    def _auth_report(self, result: AuthResult) -> None:
        if result.success:
            self._auth_deadline = None
            self.username = result.username
            self._events.append(AuthSucceeded(result.username, result.method, result.hlak))
            self._start_network(self._now)
            return
        self._events.append(AuthFailed(result.username, result.method, result.code, result.reason))
        if not result.retry:
            self._down_reason = "authentication failed"
            self.close("authentication failed", self._now)

    def _start_network(self, now: float) -> None:
        raise NotImplementedError

    def _open_ipcp(self, handler: FsmHandler, now: float) -> None:
        self.phase = Phase.NETWORK
        self.ipcp = self._new_fsm("IPCP", handler, Protocol.IPCP)
        self.ipcp.open(now)
        self.ipcp.up(now)

    # ------------------------------------------------------------------ IPCP callbacks

    def ipcp_down(self) -> None:
        self.is_network_up = False

    def ipcp_finished(self) -> None:
        self._ncp_finished()

    @property
    def ipcp_given_up(self) -> bool:
        """IPCP ran and finished without opening (Protocol-Rejected by the peer, or its
        Configure-Requests unanswered or refused until the restart counter ran out)."""
        return self.ipcp is not None and self.ipcp.state in (State.CLOSED, State.STOPPED)

    def _ncp_finished(self) -> None:
        """One NCP finished: the link ends once none is negotiating or open any more."""
        if self.phase is not Phase.NETWORK:
            return
        finished = (State.INITIAL, State.STARTING, State.CLOSED, State.STOPPED)
        if all(f is None or f.state in finished for f in (self.ipcp, self.ipv6cp)):
            self.close("no network protocol running", self._now)

    # ------------------------------------------------------------------ IPV6CP

    def _open_ipv6cp(
        self,
        now: float,
        *,
        local_iid: bytes | None = None,
        in_use: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Run IPV6CP next to IPCP (either end calls this in ``_start_network``, after
        ``_open_ipcp``); ``in_use`` as for :class:`Ipv6cpHandler`."""
        handler = Ipv6cpHandler(
            random=self._random,
            listener=self,
            local_iid=local_iid,
            in_use=in_use or (lambda iid: False),
        )
        self.ipv6cp_handler = handler
        self.ipv6cp = self._new_fsm("IPV6CP", handler, Protocol.IPV6CP)
        self.ipv6cp.open(now)
        self.ipv6cp.up(now)

    def _network6_prefix(self) -> IPv6Network | None:
        return None

    # ------------------------------------------------------------------ IPV6CP callbacks

    def ipv6cp_up(self) -> None:
        handler = self.ipv6cp_handler
        assert handler is not None
        self.is_network6_up = True
        self._events.append(
            Network6Up(handler.local_iid, handler.peer_iid, self._network6_prefix())
        )

    def ipv6cp_down(self) -> None:
        if self.is_network6_up:
            self.is_network6_up = False
            self._events.append(Network6Down())

    def ipv6cp_finished(self) -> None:
        self._ncp_finished()
