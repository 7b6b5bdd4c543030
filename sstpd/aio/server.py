"""The daemon: TLS (or plain HTTP) listeners, one TUN device, the session registry.

One process, one event loop. Each TCP connection gets a ``ServerProtocol`` with its own
sans-I/O ``ServerSession``. The TUN reader drains up to ``TUN_BATCH`` packets per wake-up,
groups them by destination session and writes each session's share with one
``transport.write`` (one TLS record per batch instead of one per packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import struct
import tempfile
from ipaddress import IPv4Address
from typing import Any

from sstpd import certs, users
from sstpd.aio.notify import sd_notify
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.aio.tun import TunDevice
from sstpd.config import DEFAULT_CIPHERS, Config
from sstpd.proto.pool import AddressPool
from sstpd.proto.ppp.link import PppServerConfig
from sstpd.proto.session import (
    Authenticated,
    AuthenticationFailed,
    Event,
    IpReceived,
    ServerSession,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.sstp.binding import cert_hashes as hashes_of
from sstpd.proto.sstp.connection import Timeouts
from sstpd.proto.sstp.constants import HashProtocol

log = logging.getLogger("sstpd")

TUN_BATCH = 64
TUN_READ_SIZE = 65536
_IP_PREFIX = struct.Struct("!BBHI")
_PPP_IPV4 = 0xFF030021


def make_ssl_context(config: Config) -> ssl.SSLContext:
    """TLS >= 1.2 server context with the configured certificate, key and chain.

    Cipher choice (TLS 1.2): ECDHE with AES-GCM first (what Windows 10/11 negotiate), then
    the RSA-key-exchange AES suites MikroTik RouterOS uses with pfs=no. TLS 1.3 suites are
    OpenSSL's defaults (Windows 11 uses TLS 1.3)."""
    sc = config.server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if sc.tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.set_ciphers(sc.ciphers or DEFAULT_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    load_certificate(ctx, config)
    return ctx


def load_certificate(ctx: ssl.SSLContext, config: Config) -> None:
    sc = config.server
    if not sc.chain:
        ctx.load_cert_chain(str(sc.certificate), str(sc.key))
        return
    # the chain lives in its own file: OpenSSL wants leaf + chain in one
    with open(sc.certificate, "rb") as f:
        pem = f.read()
    with open(sc.chain, "rb") as f:
        pem += b"\n" + f.read()
    with tempfile.NamedTemporaryFile(prefix="sstpd-chain-") as tmp:
        tmp.write(pem)
        tmp.flush()
        ctx.load_cert_chain(tmp.name, str(sc.key))


def binding_hashes(config: Config) -> dict[HashProtocol, bytes]:
    """The certificate hashes the crypto binding is checked against.

    Configured hashes win (TLS offload: the offloader's certificate); otherwise the hashes
    of the leaf certificate we present."""
    sc = config.server
    out: dict[HashProtocol, bytes] = {}
    if sc.tls:
        out.update(hashes_of(certs.load_certificate_der(str(sc.certificate))))
    if sc.cert_hash_sha1:
        out[HashProtocol.SHA1] = sc.cert_hash_sha1
    if sc.cert_hash_sha256:
        out[HashProtocol.SHA256] = sc.cert_hash_sha256
    return out


def hash_mask(config: Config, hashes: dict[HashProtocol, bytes]) -> int:
    mask = 0
    for name in config.server.hash_protocols:
        proto = HashProtocol.SHA256 if name == "sha256" else HashProtocol.SHA1
        if proto in hashes:
            mask |= proto
    return mask


class ServerProtocol(SstpStreamProtocol):
    def __init__(self, server: Server) -> None:
        super().__init__(server.loop, server.tun.fd)
        self.server = server
        self.id = server.next_id()
        self.peer = "?"
        self.address: IPv4Address | None = None
        self.opened_at: float | None = None
        self.started = server.loop.time()
        self._deadline: asyncio.TimerHandle | None = None
        self.session = server.new_session()
        self.on_event = self._on_event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: no subclass
        self.transport = tr
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        srv = self.server
        if len(srv.connections) >= srv.config.server.max_sessions or srv.stopping:
            log.warning(
                "[%d] %s refused: %s",
                self.id,
                self.peer,
                "shutting down" if srv.stopping else "max_sessions reached",
            )
            srv.stats["refused"] += 1
            tr.abort()
            return
        srv.connections.add(self)
        log.debug("[%d] connection from %s", self.id, self.peer)
        self._deadline = self.loop.call_later(
            srv.config.server.handshake_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        self._deadline = None
        if not self.session.is_open and not self.session.closed:
            log.info("[%d] %s handshake not finished in time, aborting", self.id, self.peer)
            self.server.stats["handshake_timeout"] += 1
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._deadline is not None:
            self._deadline.cancel()
        self.server.forget(self)

    def _on_event(self, ev: Event) -> None:
        srv = self.server
        if isinstance(ev, SessionOpened):
            self.address = ev.peer
            self.opened_at = self.loop.time()
            srv.by_ip[ev.peer.packed] = self
            srv.stats["sessions_opened"] += 1
            hp = ev.hash_protocol.name if ev.hash_protocol is not None else "none"
            assert isinstance(self.session, ServerSession)
            log.info(
                "[%d] %s user %r (%s) connected: address %s, crypto binding verified (%s)",
                self.id,
                self.peer,
                self.session.username,
                self.session.auth_method,
                ev.peer,
                hp,
            )
        elif isinstance(ev, Authenticated):
            log.info(
                "[%d] %s user %r authenticated (%s)", self.id, self.peer, ev.username, ev.method
            )
        elif isinstance(ev, AuthenticationFailed):
            srv.stats["auth_failures"] += 1
            log.warning(
                "[%d] %s user %r authentication failed (%s, E=%d: %s)",
                self.id,
                self.peer,
                ev.username,
                ev.method,
                ev.code,
                ev.reason,
            )
        elif isinstance(ev, IpReceived):
            srv.write_tun(ev.packet)
        elif isinstance(ev, SessionClosed):
            c = self.session.counters
            log.info(
                "[%d] %s closed: %s (rx %d pkts/%d B, tx %d pkts/%d B, spoofed %d)",
                self.id,
                self.peer,
                ev.reason,
                c.rx_packets,
                c.rx_bytes,
                c.tx_packets,
                c.tx_bytes,
                c.dropped_spoofed,
            )
            srv.forget(self)


class Server:
    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.loop = asyncio.get_running_loop()
        tc = config.tunnel
        self.tun = TunDevice(tc.interface)
        self.tun.configure(address=tc.address, mtu=tc.mtu, routes=[tc.pool])
        self.pool = AddressPool(tc.pool, exclude=[tc.address])
        self.users: dict[str, users.User] = {}
        self.load_users()
        self.cert_hashes = binding_hashes(config)
        self.hash_mask = hash_mask(config, self.cert_hashes)
        self.ssl = make_ssl_context(config) if config.server.tls else None
        self.ppp_config = PppServerConfig(
            local_address=tc.address,
            auth_methods=tuple(config.auth.methods),
            dns=tuple(tc.dns),
            nbns=tuple(tc.nbns),
            mru=tc.mtu,
            auth_retries=config.auth.retries,
        )
        self.timeouts = Timeouts(
            http=config.server.handshake_timeout, hello=config.server.hello_interval
        )
        self.connections: set[ServerProtocol] = set()
        self.by_ip: dict[bytes, ServerProtocol] = {}
        self.listeners: list[asyncio.Server] = []
        self.stopping = False
        self._ids = 0
        self.stats: dict[str, int] = {
            "sessions_opened": 0,
            "auth_failures": 0,
            "refused": 0,
            "handshake_timeout": 0,
            "tun_no_route": 0,
            "tun_overflow": 0,
        }
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------ sessions
    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def load_users(self) -> None:
        path = str(self.config.auth.users_file)
        self.users = users.load_users(path) if os.path.exists(path) else {}
        self.pool.set_reserved(u.address for u in self.users.values() if u.address)

    def lookup(self, name: str) -> bytes | None:
        u = self.users.get(name)
        return u.nt_hash if u is not None else None

    def assign_address(self, name: str) -> IPv4Address | None:
        u = self.users.get(name)
        return self.pool.allocate(u.address if u is not None else None)

    def new_session(self) -> ServerSession:
        return ServerSession(
            ppp_config=self.ppp_config,
            cert_hashes=self.cert_hashes,
            hash_protocols=self.hash_mask,
            lookup=self.lookup,
            assign_address=self.assign_address,
            random=os.urandom,
            now=self.loop.time(),
            timeouts=self.timeouts,
        )

    def forget(self, proto: ServerProtocol) -> None:
        self.connections.discard(proto)
        session = proto.session
        assert isinstance(session, ServerSession)
        addr = session.peer_address
        if addr is not None:
            if self.by_ip.get(addr.packed) is proto:
                del self.by_ip[addr.packed]
            self.pool.release(addr)
        if self.stopping and not self.connections:
            self._stopped.set()

    # ------------------------------------------------------------ TUN
    def write_tun(self, packet: bytes) -> None:
        try:
            os.write(self.tun.fd, packet)
        except OSError:
            self.stats["tun_no_route"] += 1

    def _tun_readable(self) -> None:
        fd = self.tun.fd
        by_ip = self.by_ip
        pending: dict[ServerProtocol, list[bytes]] = {}
        pack = _IP_PREFIX.pack
        for _ in range(TUN_BATCH):
            try:
                pkt = os.read(fd, TUN_READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                break
            proto = by_ip.get(pkt[16:20]) if pkt[0] >> 4 == 4 else None
            if proto is None:
                self.stats["tun_no_route"] += 1
                continue
            lst = pending.get(proto)
            if lst is None:
                lst = pending[proto] = []
            lst.append(pack(0x10, 0, len(pkt) + 8, _PPP_IPV4))
            lst.append(pkt)
        limit = self.config.limits.session_buffer
        for proto, parts in pending.items():
            tr = proto.transport
            c = proto.session.counters
            n = len(parts) // 2
            if tr is None or tr.get_write_buffer_size() > limit:
                c.dropped_overflow += n
                continue
            data = b"".join(parts)
            tr.write(data)
            c.tx_packets += n
            c.tx_bytes += len(data) - 8 * n

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        sc = self.config.server
        for addr in sc.listen:
            srv = await self.loop.create_server(
                lambda: ServerProtocol(self),
                host=str(addr),
                port=sc.port,
                ssl=self.ssl,
                ssl_handshake_timeout=sc.handshake_timeout if self.ssl else None,
                reuse_address=True,
                backlog=1024,
            )
            self.listeners.append(srv)
        self.loop.add_reader(self.tun.fd, self._tun_readable)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        where = ", ".join(f"{a}:{sc.port}" for a in sc.listen)
        hashes = " ".join(f"{p.name}={h.hex()}" for p, h in sorted(self.cert_hashes.items()))
        log.info(
            "listening on %s (%s), tunnel %s %s pool %s, %d users; binding hashes %s",
            where,
            "TLS" if self.ssl else "plain HTTP",
            self.tun.name,
            self.config.tunnel.address,
            self.config.tunnel.pool,
            len(self.users),
            hashes,
        )
        sd_notify(f"READY=1\nSTATUS=listening on {where}")

    def reload(self) -> None:
        """SIGHUP: re-read the users file and the certificate; sessions stay up."""
        try:
            self.load_users()
            if self.ssl is not None:
                load_certificate(self.ssl, self.config)
            self.cert_hashes = binding_hashes(self.config)
            self.hash_mask = hash_mask(self.config, self.cert_hashes)
            log.info("reloaded: %d users", len(self.users))
        except Exception as exc:  # keep serving with what we had
            log.error("reload failed, keeping the running configuration: %s", exc)

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        sd_notify("STOPPING=1")
        log.info("stopping: disconnecting %d sessions", len(self.connections))
        for srv in self.listeners:
            srv.close()
        now = self.loop.time()
        for proto in list(self.connections):
            proto.session.disconnect(now, "server shutting down")
            proto._after_input()
        if not self.connections:
            self._stopped.set()

    async def run(self) -> None:
        await self.start()
        await self._stopped.wait()
        # give Call Disconnect a moment to be acknowledged, then drop whatever is left
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), 2.0)
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.abort()
        self.loop.remove_reader(self.tun.fd)
        self.tun.close()
        log.info("stopped")

    async def _drain(self) -> None:
        while self.connections:
            await asyncio.sleep(0.05)


def run(config: Config, config_path: str | None = None, **_: Any) -> int:
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> None:
        server = Server(config, config_path)
        await server.run()

    runner(main())
    return 0
