"""The daemon process: start, run, stop.

``Daemon`` puts the parts together in one event loop: the TUN device and its pump
(``aio.datapath``), the session registry (``aio.server``), the TLS context
(``aio.tls``), the listeners, the control socket (answered by ``aio.admin``), RADIUS and
its Disconnect-Request listener, the ACME manager. It installs the signal handlers
(SIGTERM/SIGINT stop, SIGHUP reloads), tells systemd where it is (``sd_notify``) and, on
stop, ends every session with a Call Disconnect before it closes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from sstpd.aio.admin import Admin
from sstpd.aio.connection import ServerProtocol
from sstpd.aio.control import ControlServer
from sstpd.aio.dae import DaeServer
from sstpd.aio.datapath import TunPump
from sstpd.aio.listener import Listener
from sstpd.aio.notify import sd_notify
from sstpd.aio.server import Server
from sstpd.aio.settings import RuntimeSettings
from sstpd.aio.supervisor import supervise
from sstpd.aio.tls import cert_summary, make_ssl_context
from sstpd.aio.tlsroute import TlsRouter
from sstpd.aio.tun import TunDevice
from sstpd.aio.workers import (
    LinkControl,
    RegistryLink,
    RoutedPool,
    RoutedPrefixPool,
    WorkerRole,
    worker_count,
)
from sstpd.config import Config
from sstpd.errors import SstpdError
from sstpd.proto import aaa, radius

if TYPE_CHECKING:
    from sstpd.aio.acme import AcmeManager, AcmeSite

log = logging.getLogger("sstpd")


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def acme_manager(site: AcmeSite) -> AcmeManager:
    """Imported only with [acme] names: the ``acme`` package is an optional extra.
    ``site``: the daemon, or the supervisor of the workers."""
    try:
        from sstpd.aio.acme import AcmeManager
    except ImportError as exc:
        raise SstpdError(
            f"[acme] needs the acme and josepy packages ({exc}): pip install 'sstpd[acme]'"
        ) from None
    return AcmeManager(site)


class Daemon:
    def __init__(
        self, config: Config, config_path: str | None = None, role: WorkerRole | None = None
    ) -> None:
        # role: one of server.workers processes (sstpd.aio.workers); None: the only one
        self.role = role
        config = self.localize(config)
        self.config_path = config_path
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.started_wall = time.time()
        tc = config.tunnel
        pool: RoutedPool | None = None
        self.shared: RegistryLink | None = None
        pool6: RoutedPrefixPool | None = None
        if role is None:
            self.tun = TunDevice(tc.interface, offload=tc.offload)
            self.tun.configure(
                address=tc.address,
                mtu=tc.mtu,
                routes=[tc.pool],
                ipv6_address=tc.ipv6_address if tc.ipv6_pool is not None else None,
                ipv6_routes=[tc.ipv6_pool] if tc.ipv6_pool is not None else [],
            )
        else:  # its own TUN, routes for its slices of the pools only (see workers)
            part6 = role.part6
            self.tun = TunDevice(role.tun_name(tc.interface), offload=tc.offload)
            self.tun.configure(
                address=tc.address,
                mtu=tc.mtu,
                routes=role.part.routes,
                ipv6_address=tc.ipv6_address if part6 is not None else None,
                ipv6_routes=part6.routes if part6 is not None else [],
            )
            pool = RoutedPool(
                tc.pool,
                exclude=list(tc.reserved_addresses()),
                part=role.part,
                ifname=self.tun.name,
                claim_dynamic=lambda: "radius" in self.config.auth.backends,
            )
            self.shared = RegistryLink(role.registry_fd, lambda msg: self.server.pushed(msg))
            if tc.ipv6_pool is not None and part6 is not None:
                pool6 = RoutedPrefixPool(
                    tc.ipv6_pool,
                    exclude=[tc.ipv6_address] if tc.ipv6_address is not None else [],
                    part=part6,
                    ifname=self.tun.name,
                    claim_dynamic=lambda: "radius" in self.config.auth.backends,
                )
        nofile = raise_nofile_limit()
        settings = RuntimeSettings.from_config(config)
        self.server = Server(
            settings,
            nofile=nofile,
            boot_id=f"{int(self.started_wall):x}",
            role=role,
            pool=pool,
            shared=self.shared,
            pool6=pool6,
        )
        srv = self.server
        self.pump = TunPump(
            self.tun.fd,
            srv.by_ip,
            srv.stats,
            lambda: srv.config.limits.session_buffer,
            routes6=srv.by_prefix6,
            vnet_hdr=self.tun.vnet_hdr,
        )
        self.dae: DaeServer | None = None
        self.ssl = make_ssl_context(config) if config.server.tls else None
        # ACME (sstpd.aio.acme): the router answers TLS-ALPN-01 on the listener
        self.router = TlsRouter()
        self.cert_summary = cert_summary(config)
        self.listeners: list[Listener] = []
        # with workers the supervisor runs the ACME manager and sends each worker's router
        # the challenges (sstpd.aio.workers)
        self.acme: AcmeManager | None = (
            acme_manager(self) if config.acme.enabled and role is None else None
        )
        self.admin = Admin(self)
        self.control: ControlServer | LinkControl
        if role is None:
            self.control = ControlServer(
                config.server.control_socket,
                self.admin.handle_control,
                config.server.control_group,
            )
        else:  # the supervisor owns the public socket and asks each worker over a link
            self.control = LinkControl(
                role.control_fd, self.admin.handle_control, self.request_stop
            )

    def localize(self, config: Config) -> Config:
        """A worker enforces its share of the global limits (see sstpd.aio.workers)."""
        return config if self.role is None else self.role.localize(config)

    @property
    def config(self) -> Config:
        return self.server.config

    def reload(self) -> dict[str, Any]:
        return self.admin.reload()

    async def start(self) -> None:
        sc = self.config.server
        srv = self.server
        # TLS-ALPN-01 needs the ClientHello before TLS starts: the listener's own accept loop
        tls_alpn = self.config.acme.enabled and self.config.acme.challenge == "tls-alpn-01"
        for addr in sc.listen:
            self.listeners.append(
                Listener(
                    str(addr),
                    sc.port,
                    lambda src, pending: ServerProtocol(srv, self.pump, src, pending),
                    self.ssl,
                    srv,
                    proxy_protocol=sc.proxy_protocol,
                    router=self.router if tls_alpn else None,
                    reuse_port=self.role is not None,
                    own_tls=sc.tls_transport == "sstpd",
                )
            )
        await self.control.start()
        if self.shared is not None:
            await self.shared.start()
        await srv.aaa.open()
        # with workers the supervisor listens and asks them (sstpd.aio.workers)
        if self.config.radius.dae_listen is not None and self.role is None:
            self.dae = DaeServer(self.config.radius, self.admin.dae_disconnect)
            await self.dae.open()
        self.loop.add_reader(self.tun.fd, self.pump.readable)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        where = ", ".join(f"{a}:{sc.port}" for a in sc.listen)
        hashes = " ".join(f"{p.name}={h.hex()}" for p, h in sorted(srv.cert_hashes.items()))
        role = self.role
        log.info(
            "%slistening on %s (%s%s), tunnel %s %s pool %s, %d users; binding hashes %s",
            f"worker {role.index}: " if role is not None else "",
            where,
            "TLS" if self.ssl else "plain HTTP",
            ", PROXY protocol" if sc.proxy_protocol else "",
            self.tun.name,
            self.config.tunnel.address,
            " ".join(map(str, role.part.routes)) if role is not None else self.config.tunnel.pool,
            len(srv.users),
            hashes,
        )
        tc = self.config.tunnel
        if tc.ipv6_pool is not None:
            part6 = role.part6 if role is not None else None
            log.info(
                "IPv6: %s on %s, one /64 per session from %s (%d available)",
                tc.ipv6_address,
                self.tun.name,
                " ".join(map(str, part6.routes)) if part6 is not None else tc.ipv6_pool,
                srv.pool6.size if srv.pool6 is not None else 0,
            )
        if self.acme is not None:
            await self.acme.start()
        sd_notify(f"READY=1\nSTATUS=listening on {where}")

    def request_stop(self) -> None:
        srv = self.server
        if srv.stopping:
            return
        srv.stop_admitting()
        sd_notify("STOPPING=1")
        if self.acme is not None:
            self.acme.close()
        log.info("stopping: disconnecting %d sessions", len(srv.connections))
        for listener in self.listeners:
            listener.close()
        for proto in list(srv.connections):
            proto.terminate_cause = radius.TERMINATE_NAS_REBOOT
            proto.disconnect("server shutting down")
        if not srv.connections:
            srv.stopped.set()

    async def run(self) -> None:
        srv = self.server
        await self.start()
        await srv.stopped.wait()
        # give Call Disconnect a moment to be acknowledged, then drop whatever is left
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), 2.0)
        for proto in list(srv.connections):
            if proto.transport is not None:
                proto.transport.abort()
        await srv.aaa.drain(5.0)  # the accounting Stops of the sessions just ended
        srv.aaa.nas_status(aaa.ACCT_OFF)
        await srv.aaa.drain(5.0)
        srv.aaa.close()
        if self.dae is not None:
            self.dae.close()
        self.control.close()
        if self.shared is not None:
            self.shared.close()
        self.loop.remove_reader(self.tun.fd)
        self.tun.close()
        log.info("stopped")

    async def _drain(self) -> None:
        while self.server.connections:
            await asyncio.sleep(0.05)


def run(
    config: Config, config_path: str | None = None, role: WorkerRole | None = None, **_: Any
) -> int:
    """``sstpd serve``: the daemon in this process, or the supervisor of
    ``server.workers`` worker processes (``role``: this process is one of them)."""
    if role is None and (count := worker_count(config)) > 1:
        return supervise(config, config_path, count)
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
        daemon = Daemon(config, config_path, role)
        await daemon.run()

    runner(main())
    return 0
