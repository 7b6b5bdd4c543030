"""The client's connection (``sstpd connect``, see ``sstpd.aio.client``): its options
(``ClientOptions``), the TLS context they make, and ``ClientProtocol``, the asyncio
protocol that runs a ``ClientSession`` of the sans-I/O core over the SSTP stream and
turns its events into futures (opened, closed, routes, IPv6) and received packets.

Separate from ``sstpd.aio.client_tunnel`` (what a caller holds once the session is open)
because this is the part that speaks to the server: the fast path it shares with the
daemon (``SstpStreamProtocol``) and the session's events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from sstpd.aio.datapath import send_batch
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.proto.dhcp import AckInfo, is_dhcp_reply
from sstpd.proto.ipv6.autoconf import Ipv6Config
from sstpd.proto.ppp.link.events import PppClientConfig
from sstpd.proto.session import (
    AuthFailed,
    ClientSession,
    Event,
    IpReceived,
    Ipv6Configured,
    Notice,
    RoutesReceived,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.sstp.binding import cert_hashes as hashes_of
from sstpd.proto.sstp.constants import HashProtocol

log = logging.getLogger("sstpd.client")


class ConnectError(Exception):
    """The tunnel could not be established; ``code`` is the MS-CHAPv2 error if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ClientOptions:
    host: str
    user: str
    password: str
    port: int = 443
    auth_methods: tuple[str, ...] = ("eap-mschapv2", "mschapv2", "pap")
    tls: bool = True
    ca_file: str | None = None
    insecure: bool = False
    server_name: str | None = None
    tun: str | None = None
    routes: list[IPv4Network] = field(default_factory=list)
    routes6: list[IPv6Network] = field(default_factory=list)  # into the TUN once IPv6 is up
    accept_routes: bool = False  # DHCPINFORM after IPCP, install the DHCPACK's routes
    ipv6: bool = False  # negotiate IPV6CP and configure the RA's address
    ipv6_wait: float = 10.0  # how long open() waits for the Router Advertisement
    timeout: float = 30.0
    source_address: str | None = None
    # one transport.write (= one TLS record, one send) per IP packet instead of one per
    # batch: the shape openconnect and most likely real SSTP clients put on the wire
    record_per_packet: bool = False
    # testing knobs: present a wrong certificate hash / MAC on purpose
    cert_hashes_override: dict[HashProtocol, bytes] | None = None
    hlak_override: bytes | None = None


class ClientProtocol(SstpStreamProtocol):
    is_dhcp = staticmethod(is_dhcp_reply)  # the DHCPACK goes to the session, not the TUN

    def __init__(self, loop: asyncio.AbstractEventLoop, opts: ClientOptions) -> None:
        super().__init__(loop, -1)
        self.opts = opts
        self.opened: asyncio.Future[SessionOpened] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()
        self.auth_failure: AuthFailed | None = None
        self.routes: asyncio.Future[AckInfo] = loop.create_future()
        self.ipv6: asyncio.Future[Ipv6Config] = loop.create_future()
        #: called with each later Ipv6Configured (the RA changed), once a TUN is attached
        self.on_ipv6: Callable[[Ipv6Config], None] | None = None
        self.on_event = self._on_event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        opts = self.opts
        hashes = opts.cert_hashes_override
        if hashes is None:
            sslobj = transport.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            hashes = hashes_of(der) if der else {}
        now = self.loop.time()
        self.session = ClientSession(
            host=opts.server_name or opts.host,
            ppp_config=PppClientConfig(
                username=opts.user,
                password=opts.password,
                auth_methods=opts.auth_methods,
                ipv6=opts.ipv6,
            ),
            cert_hashes=hashes,
            random=os.urandom,
            now=now,
            hlak_override=opts.hlak_override,
        )
        self.session.start(now)
        self._after_input()

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, SessionOpened):
            if not self.opened.done():
                self.opened.set_result(ev)
        elif isinstance(ev, IpReceived):
            if self.ip_fd >= 0:  # the slow path's packets (IPv6 among them) go to the TUN too
                try:
                    os.write(self.ip_fd, ev.packet)
                except OSError:
                    self.tun_errors += 1
            else:
                self.packets.put_nowait(ev.packet)
        elif isinstance(ev, RoutesReceived):
            if not self.routes.done():
                self.routes.set_result(ev.info)
        elif isinstance(ev, Ipv6Configured):
            if not self.ipv6.done():
                self.ipv6.set_result(ev.config)
            elif self.on_ipv6 is not None:
                self.on_ipv6(ev.config)
        elif isinstance(ev, AuthFailed):
            self.auth_failure = ev
        elif isinstance(ev, Notice):
            log.debug("%s", ev.message)
        elif isinstance(ev, SessionClosed):
            if not self.opened.done():
                af = self.auth_failure
                self.opened.set_exception(
                    ConnectError(
                        f"authentication failed: E={af.code} {af.reason}" if af else ev.reason,
                        af.code if af else None,
                    )
                )
            if not self.closed.done():
                self.closed.set_result(ev.reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if not hasattr(self, "session"):
            return
        super().connection_lost(exc)

    def send_ip_batch(self, packets: list[bytes]) -> None:
        if self.transport is None or not self.session.is_open:
            return
        if not all(p[0] >> 4 == 4 for p in packets):  # IPv6 among them: only over IPV6CP
            ipv6 = self.session.link.is_network6_up
            packets = [p for p in packets if p[0] >> 4 == 4 or (ipv6 and p[0] >> 4 == 6)]
        send_batch(
            self.transport,
            self.session.counters,
            packets,
            record_per_packet=self.opts.record_per_packet,
        )


def ssl_context(opts: ClientOptions) -> ssl.SSLContext | None:
    if not opts.tls:
        return None
    ctx = ssl.create_default_context(cafile=opts.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
