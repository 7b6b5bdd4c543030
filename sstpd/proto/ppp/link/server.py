"""``PppServer``, the authenticator end: demands EAP/MS-CHAPv2/PAP, checks the credentials
through ``verify`` (at once or later, ``complete_verification``), then assigns the peer an
IPv4 address and, with ``assign_prefix``, a /64 for IPV6CP.

Separate from the client, with which it shares only ``phases.Link``.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Network

from sstpd.proto.ppp.auth.common import (
    MSCHAPV2,
    PAP,
    Verdict,
    Verify,
    VerifyRequest,
    local_verifier,
)
from sstpd.proto.ppp.auth.mschapv2 import MsChapV2Server
from sstpd.proto.ppp.auth.pap import PapServer
from sstpd.proto.ppp.eap.codec import EAP_MSCHAPV2
from sstpd.proto.ppp.eap.server import EapServer
from sstpd.proto.ppp.frame import Protocol
from sstpd.proto.ppp.ipcp import IpcpServerHandler
from sstpd.proto.ppp.link.base import AUTH_PROTOCOL, Auth
from sstpd.proto.ppp.link.events import NetworkUp, PppServerConfig
from sstpd.proto.ppp.link.phases import Link


class PppServer(Link):
    """The authenticator end: demands EAP/MS-CHAPv2/PAP, then assigns the peer an address."""

    _is_server = True

    def __init__(
        self,
        config: PppServerConfig,
        *,
        assign_address: Callable[[str], IPv4Address | None],
        random: Callable[[int], bytes],
        now: float,
        lookup: Callable[[str], bytes | None] | None = None,
        verify: Verify | None = None,
        assign_prefix: Callable[[str], IPv6Network | None] | None = None,
        iid_in_use: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``verify`` checks credentials (see ``auth.VerifyRequest``); ``lookup`` (user ->
        NT hash) is the shorthand for the local users file. ``assign_prefix`` (user -> a
        /64, None when the pool is exhausted) turns IPv6 on; ``iid_in_use`` says whether
        another session already has a peer interface identifier."""
        self.config = config
        if verify is None:
            if lookup is None:
                raise TypeError("PppServer needs verify= or lookup=")
            verify = local_verifier(lookup)
        self._verify = verify
        self._assign_address = assign_address
        self.peer_address: IPv4Address | None = None  # allocated at authentication
        self._address_owner: str | None = None
        self._assign_prefix = assign_prefix
        self._iid_in_use = iid_in_use
        #: the session's /64, held from the Network phase on; the owner releases it
        self.prefix: IPv6Network | None = None
        super().__init__(config, config.auth_methods, random, now)
        self.ipv6_enabled = assign_prefix is not None

    def _start_auth(self, now: float) -> None:
        method = self.lcp_handler.auth_method
        send = self._sender(AUTH_PROTOCOL.get(method or PAP, Protocol.PAP))
        auth: Auth
        if method == MSCHAPV2:
            auth = MsChapV2Server(
                send,
                self._auth_report,
                verify=self._verify,
                random=self._random,
                name=self.config.server_name,
                retries=self.config.auth_retries,
                restart_interval=self.config.restart_interval,
            )
        elif method == PAP:
            auth = PapServer(
                send, self._auth_report, verify=self._verify, retries=self.config.auth_retries
            )
        elif method == EAP_MSCHAPV2:
            auth = EapServer(
                send,
                self._auth_report,
                verify=self._verify,
                random=self._random,
                name=self.config.server_name,
                retries=self.config.auth_retries,
                restart_interval=self.config.restart_interval,
                notice=self.notice,
            )
        else:
            self.close("no authentication method configured", now)
            return
        self._begin_auth(auth, now)

    def complete_verification(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """A verification the ``verify`` callable answered later (None at first) is done.

        Stale answers (another attempt, a restarted or finished link) are ignored."""
        self._now = now
        auth = self._auth
        if self._finished or auth is None:
            return
        complete = getattr(auth, "complete", None)
        if complete is not None:
            complete(request, verdict, now)

    def _start_network(self, now: float) -> None:
        # Re-authentication (a new LCP negotiation of an open link) keeps the address the
        # link already holds: allocating again would leak the first one. Whoever owns the
        # link releases ``peer_address`` when it ends, whether IPCP ever opened or not.
        address = self.peer_address
        if address is not None and self.username != self._address_owner:
            self.close("re-authenticated as a different user", now)
            return
        if address is None:
            address = self._assign_address(self.username or "")
            if address is None:
                self.close("address pool exhausted", now)
                return
            self.peer_address = address
            self._address_owner = self.username
        handler = IpcpServerHandler(
            local=self.config.local_address,
            peer=address,
            dns=self.config.dns,
            nbns=self.config.nbns,
            listener=self,
        )
        self._open_ipcp(handler, now)
        self._start_ipv6(now)

    def _start_ipv6(self, now: float) -> None:
        if not self.ipv6_enabled or self._assign_prefix is None:
            return
        if self.prefix is None:  # re-authentication keeps the prefix, like the address
            self.prefix = self._assign_prefix(self.username or "")
            if self.prefix is None:
                self.ipv6_enabled = False  # IPV6CP now gets Protocol-Reject: IPv4 only
                self.notice("warning", "IPv6 prefix pool exhausted: IPV6CP refused, IPv4 only")
                return
        self._open_ipv6cp(now, in_use=self._iid_in_use)

    def _network6_prefix(self) -> IPv6Network | None:
        return self.prefix

    def ipcp_up(self) -> None:
        assert self.peer_address is not None
        self.is_network_up = True
        self._events.append(
            NetworkUp(self.config.local_address, self.peer_address, self.config.dns)
        )
