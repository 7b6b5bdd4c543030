"""An SSTP client on the sans-I/O core of the server: SSTP + PPP (EAP/MS-CHAPv2/PAP) + TUN.

Library use::

    tunnel = await Tunnel.open(ClientOptions(host="vpn.example.org", user="alice",
                                             password="secret", ca_file="ca.pem", tun="sstpc0"))
    print(tunnel.local_address, tunnel.peer_address, tunnel.dns)
    await tunnel.close()

Without ``tun`` the tunnel carries packets for the caller (``send_ip`` / ``recv_ip``), which
is how tests open dozens of sessions from one process. Command line: ``sstpd connect``.

``accept_routes``: after IPCP a DHCPINFORM goes into the tunnel (as Windows sends it) and
the split-tunnel routes of the server's DHCPACK are installed on the TUN; its domain and
DNS servers are reported. ``ipv6``: IPV6CP is negotiated next to IPCP, and the address the
server's Router Advertisement gives (``prefix::<IID>/64``, plus ``fe80::<IID>``) is put
on the TUN, where IPv6 packets then flow both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network

from sstpd.aio import clientnet
from sstpd.aio.datapath import read_batch, send_batch
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.aio.tun import TunDevice
from sstpd.proto.dhcp import AckInfo, is_dhcp_reply
from sstpd.proto.ipv6.autoconf import Ipv6Config
from sstpd.proto.ppp.fsm import State
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


def _ssl_context(opts: ClientOptions) -> ssl.SSLContext | None:
    if not opts.tls:
        return None
    ctx = ssl.create_default_context(cafile=opts.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


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
        ctx = _ssl_context(opts)
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


# ---------------------------------------------------------------- command line


def _parse_args(argv: list[str]) -> ClientOptions:
    p = argparse.ArgumentParser(prog="sstpd connect", description="Connect to an SSTP server.")
    p.add_argument("server", help="HOST or HOST:PORT")
    p.add_argument("--user", required=True)
    p.add_argument("--password", help="(visible in ps; prefer --password-file or $SSTPD_PASSWORD)")
    p.add_argument("--password-file")
    p.add_argument(
        "--auth",
        default="eap-mschapv2,mschapv2,pap",
        help="methods the server may ask for, comma-separated: eap-mschapv2,mschapv2,pap",
    )
    p.add_argument("--ca-file", help="CA certificate to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--server-name", help="TLS server name / HTTP Host (default: HOST)")
    p.add_argument("--plain", action="store_true", help="plain HTTP (no TLS); needs --cert-hash")
    p.add_argument("--cert-hash", help="SHA-256 certificate hash for crypto binding (hex)")
    p.add_argument("--tun", default="sstpc0", help="TUN device name (default sstpc0)")
    p.add_argument(
        "--route", action="append", default=[], help="route NET (IPv4 or IPv6) into the tunnel"
    )
    p.add_argument(
        "--accept-routes",
        action="store_true",
        help="ask the server for its split-tunnel routes (DHCPINFORM) and install them",
    )
    p.add_argument(
        "--ipv6", action="store_true", help="negotiate IPv6 and configure the advertised address"
    )
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument(
        "--record-per-packet",
        action="store_true",
        help="send one TLS record per IP packet (as openconnect does) instead of one per batch",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    host, _, port = a.server.rpartition(":") if ":" in a.server else (a.server, "", "443")
    password = a.password
    if a.password_file:
        with open(a.password_file) as f:
            password = f.readline().rstrip("\n")
    if password is None:
        password = os.environ.get("SSTPD_PASSWORD")
    if password is None:
        p.error("no password: use --password-file, $SSTPD_PASSWORD or --password")
    try:
        nets = [ip_network(r) for r in a.route]
    except ValueError as exc:
        p.error(f"--route: {exc}")
    override = None
    if a.cert_hash:
        override = {HashProtocol.SHA256: bytes.fromhex(a.cert_hash.replace(":", ""))}
    elif a.plain:
        p.error("--plain needs --cert-hash")
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    return ClientOptions(
        host=host,
        port=int(port),
        user=a.user,
        password=password,
        auth_methods=tuple(x.strip() for x in a.auth.split(",") if x.strip()),
        tls=not a.plain,
        ca_file=a.ca_file,
        insecure=a.insecure,
        server_name=a.server_name,
        tun=a.tun,
        routes=[n for n in nets if isinstance(n, IPv4Network)],
        routes6=[n for n in nets if isinstance(n, IPv6Network)],
        accept_routes=a.accept_routes,
        ipv6=a.ipv6,
        timeout=a.timeout,
        cert_hashes_override=override,
        record_per_packet=a.record_per_packet,
    )


async def _run(opts: ClientOptions) -> int:
    try:
        tunnel = await Tunnel.open(opts)
    except ConnectError as exc:
        print(f"sstpd connect: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        print(f"sstpd connect: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    info = {
        "local": str(tunnel.local_address),
        "peer": str(tunnel.peer_address),
        "dns": [str(d) for d in tunnel.dns],
        "tun": opts.tun,
        "hash": tunnel.hash_protocol.name if tunnel.hash_protocol else None,
    }
    if opts.accept_routes:
        pushed = tunnel.pushed
        info["routes"] = [str(n) for n in tunnel.installed_routes]
        info["domain"] = pushed.domain if pushed else None
        info["dhcp_dns"] = [str(d) for d in pushed.dns] if pushed else []
    if opts.ipv6:
        v6 = tunnel.ipv6
        info["ipv6"] = f"{v6.address}/64" if v6 else None
        info["ipv6_dns"] = [str(d) for d in v6.dns] if v6 else []
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    closed = asyncio.ensure_future(tunnel.wait_closed())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({closed, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        print(f"sstpd connect: closed by server: {closed.result()}", file=sys.stderr)
        stopper.cancel()
        return 1
    closed.cancel()
    await tunnel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = _parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_run(opts))


if __name__ == "__main__":
    raise SystemExit(main())
