"""The client's open tunnel (``sstpd connect``, see ``sstpd.aio.client``): ``Tunnel.open``
connects and waits for the session, then attaches the TUN, waits for the Router
Advertisement (``ipv6``) and asks for the split-tunnel routes (``accept_routes``,
DHCPINFORM); without a TUN the caller sends and receives packets itself
(``send_ip`` / ``recv_ip``). ``close`` is the graceful Call Disconnect.

Separate from ``sstpd.aio.client_protocol`` (the connection's events) because this is
what a caller holds, and the part that touches the host: the TUN device and, through
``sstpd.aio.clientnet``, its routes and addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from ipaddress import IPv4Address, IPv4Network

from sstpd.aio import clientnet
from sstpd.aio.client_protocol import ClientOptions, ClientProtocol, ssl_context
from sstpd.aio.datapath import read_batch
from sstpd.aio.tun import TunDevice
from sstpd.proto.dhcp import AckInfo
from sstpd.proto.ipv6.autoconf import Ipv6Config
from sstpd.proto.ppp.fsm import State
from sstpd.proto.session import ClientSession, SessionOpened

log = logging.getLogger("sstpd.client")


class Tunnel:
    def __init__(self, proto: ClientProtocol, opened: SessionOpened) -> None:
        self.proto = proto
        # a client session opens with IPCP (IPv6-only opens are the server's)
        assert opened.local is not None and opened.peer is not None
        self.local_address: IPv4Address = opened.local
        self.peer_address: IPv4Address = opened.peer
        self.dns = opened.dns
        self.hash_protocol = opened.hash_protocol
        self.tun: TunDevice | None = None
        self.pushed: AckInfo | None = None  # the DHCPACK (accept_routes)
        self.installed_routes: list[IPv4Network] = []
        self.ipv6: Ipv6Config | None = None

    @classmethod
    async def open(cls, opts: ClientOptions) -> Tunnel:
        loop = asyncio.get_running_loop()
        ctx = ssl_context(opts)
        local = (opts.source_address, 0) if opts.source_address else None
        async with asyncio.timeout(opts.timeout):
            _, proto = await loop.create_connection(
                lambda: ClientProtocol(loop, opts),
                opts.host,
                opts.port,
                ssl=ctx,
                server_hostname=(opts.server_name or opts.host) if ctx else None,
                local_addr=local,
            )
            try:
                opened = await proto.opened
            except BaseException:
                # not when already closing: Python 3.11.2's SSL transport, closed twice by
                # then, raises AttributeError from abort() and hides the ConnectError
                if proto.transport is not None and not proto.transport.is_closing():
                    proto.transport.abort()
                raise
        tunnel = cls(proto, opened)
        if opts.tun:
            tunnel._attach_tun(opts.tun, opts.routes)
        if opts.ipv6:
            await tunnel._wait_ipv6(opts.ipv6_wait)
        if opts.accept_routes:
            await tunnel.request_routes()
        return tunnel

    async def request_routes(self, attempts: int = 4, first_wait: float = 1.0) -> AckInfo | None:
        """DHCPINFORM (retransmitted after 1, 2, 4 s), then the DHCPACK's routes on the TUN
        (minus any that contains the SSTP server's own address). None: no answer."""
        proto = self.proto
        session = proto.session
        assert isinstance(session, ClientSession)
        wait = first_wait
        for _ in range(attempts):
            if not session.send_inform(proto.loop.time()):
                return None
            proto._after_input()
            try:
                info = await asyncio.wait_for(asyncio.shield(proto.routes), wait)
                break
            except TimeoutError:
                wait *= 2
        else:
            log.warning("no answer to DHCPINFORM: no routes pushed")
            return None
        self.pushed = info
        server = None
        if proto.transport is not None:
            peer = proto.transport.get_extra_info("peername")
            server = str(peer[0]) if peer else None
        install, refused = clientnet.split_routes((n for n, _ in info.routes), server)
        for net in refused:
            log.warning("pushed route %s contains the server %s itself: not installed", net, server)
        if self.tun is not None and install:
            clientnet.install_routes(self.tun.name, install)
        self.installed_routes = install
        log.info(
            "DHCPACK from %s: routes %s, domain %r, DNS %s",
            info.server,
            ", ".join(map(str, install)) or "none",
            info.domain,
            ", ".join(map(str, info.dns)) or "none",
        )
        return info

    async def _wait_ipv6(self, timeout: float) -> None:
        """Wait (bounded) for the RA while IPV6CP may still come up; a server without IPv6
        Protocol-Rejects IPV6CP and the wait ends at once."""
        proto = self.proto
        deadline = proto.loop.time() + timeout
        while not proto.ipv6.done() and proto.loop.time() < deadline:
            fsm = proto.session.link.ipv6cp
            if fsm is None or fsm.state in (State.CLOSED, State.STOPPED):
                log.info("the server does not do IPv6 (IPV6CP refused): IPv4 only")
                return
            await asyncio.sleep(0.05)
        if not proto.ipv6.done():
            log.warning("no Router Advertisement within %.0f s: no IPv6 address", timeout)
            return
        self._set_ipv6(proto.ipv6.result())
        proto.on_ipv6 = self._set_ipv6

    def _set_ipv6(self, config: Ipv6Config) -> None:
        self.ipv6 = config
        if self.tun is not None:
            clientnet.configure_ipv6(self.tun.name, config, self.proto.opts.routes6)
        log.info(
            "IPv6 %s/64 (router %s, DNS %s)",
            config.address,
            config.router,
            ", ".join(map(str, config.dns)) or "none",
        )

    def _attach_tun(self, name: str, routes: list[IPv4Network]) -> None:
        tun = TunDevice(name)
        tun.configure(address=self.local_address, peer=self.peer_address, mtu=1400, routes=routes)
        self.tun = tun
        self.proto.ip_fd = tun.fd
        self.proto.loop.add_reader(tun.fd, self._tun_readable)

    def _tun_readable(self) -> None:
        assert self.tun is not None
        # send_ip_batch drops IPv6 unless IPV6CP is up
        batch = [p for p in read_batch(self.tun.fd) if p and p[0] >> 4 in (4, 6)]
        if batch:
            self.proto.send_ip_batch(batch)

    @property
    def counters(self) -> object:
        return self.proto.session.counters

    @property
    def is_open(self) -> bool:
        return self.proto.session.is_open

    def send_ip(self, packet: bytes) -> None:
        self.proto.send_ip_batch([packet])

    async def recv_ip(self, timeout: float | None = None) -> bytes:
        return await asyncio.wait_for(self.proto.packets.get(), timeout)

    async def wait_closed(self) -> str:
        return await asyncio.shield(self.proto.closed)

    async def close(self, timeout: float = 6.0) -> None:
        """Graceful disconnect (Call Disconnect), then close the transport."""
        proto = self.proto
        if self.tun is not None:
            proto.loop.remove_reader(self.tun.fd)
        if not proto.session.closed:
            proto.session.disconnect(proto.loop.time())
            proto._after_input()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.closed), timeout)
        if proto.transport is not None:
            proto.transport.close()
        if self.tun is not None:
            self.tun.close()
            self.tun = None
