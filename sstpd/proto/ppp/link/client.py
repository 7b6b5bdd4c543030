"""``PppClient``, the peer end: authenticates itself with whichever of EAP/MS-CHAPv2/PAP
the server asks for and its credentials allow, retries on request, then takes the address
(and, with ``ipv6``, runs IPV6CP) the server gives.

Separate from the server, with which it shares only ``phases.Link``.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from sstpd.proto import mschap
from sstpd.proto.ppp.auth.common import MSCHAPV2, PAP
from sstpd.proto.ppp.auth.mschapv2 import MsChapV2Peer
from sstpd.proto.ppp.auth.pap import PapPeer
from sstpd.proto.ppp.eap.codec import EAP_MSCHAPV2
from sstpd.proto.ppp.eap.peer import EapPeer
from sstpd.proto.ppp.ipcp import IpcpClientHandler
from sstpd.proto.ppp.link.base import AUTH_PROTOCOL, Auth
from sstpd.proto.ppp.link.events import NetworkUp, PppClientConfig
from sstpd.proto.ppp.link.phases import Link


class PppClient(Link):
    """The peer end: authenticates itself, then takes the address the server gives."""

    _is_server = False

    def __init__(
        self, config: PppClientConfig, *, random: Callable[[int], bytes], now: float
    ) -> None:
        self.config = config
        nt_hash = config.nt_hash
        if nt_hash is None and config.password is not None:
            nt_hash = mschap.nt_password_hash(config.password)
        self._nt_hash = nt_hash
        usable = tuple(
            m
            for m in config.auth_methods
            if (m in (MSCHAPV2, EAP_MSCHAPV2) and nt_hash is not None)
            or (m == PAP and config.password is not None)
        )
        self._ipcp_handler: IpcpClientHandler | None = None
        self.peer_address: IPv4Address | None = None
        super().__init__(config, usable, random, now)
        self.username = config.username
        self.ipv6_enabled = config.ipv6

    def _start_auth(self, now: float) -> None:
        method = self.lcp_handler.peer_auth
        if method is None:  # the server does not ask us to authenticate
            self._start_network(now)
            return
        auth: Auth
        send = self._sender(AUTH_PROTOCOL[method])
        if method == MSCHAPV2:
            assert self._nt_hash is not None
            auth = MsChapV2Peer(
                send,
                self._auth_report,
                username=self.config.username,
                nt_hash=self._nt_hash,
                random=self._random,
            )
        elif method == EAP_MSCHAPV2:
            assert self._nt_hash is not None
            auth = EapPeer(
                send,
                self._auth_report,
                username=self.config.username,
                nt_hash=self._nt_hash,
                random=self._random,
            )
        else:
            assert self.config.password is not None
            auth = PapPeer(
                send,
                self._auth_report,
                username=self.config.username,
                password=self.config.password,
                restart_interval=self.config.restart_interval,
                max_transmits=self.config.max_configure,
            )
        self._begin_auth(auth, now)

    def retry_authentication(self, password: str, now: float) -> bool:
        """Answer a failure that allows a retry (MS-CHAPv2 ``R=1``, PAP Nak) anew."""
        self._now = now
        auth = self._auth
        if isinstance(auth, MsChapV2Peer | EapPeer):
            return auth.retry(mschap.nt_password_hash(password), now)
        if isinstance(auth, PapPeer):
            return auth.retry(password, now)
        return False

    def _start_network(self, now: float) -> None:
        handler = IpcpClientHandler(request_dns=self.config.request_dns, listener=self)
        self._ipcp_handler = handler
        self._open_ipcp(handler, now)
        if self.ipv6_enabled:  # the same handler as the server's, without in_use
            self._open_ipv6cp(now)

    def ipcp_up(self) -> None:
        handler = self._ipcp_handler
        assert handler is not None
        self.is_network_up = True
        self.peer_address = handler.peer_address
        local = handler.address or IPv4Address(0)
        self._events.append(NetworkUp(local, handler.peer_address, handler.dns_servers))

    @property
    def local_address(self) -> IPv4Address | None:
        handler = self._ipcp_handler
        return handler.address if handler is not None and self.is_network_up else None
