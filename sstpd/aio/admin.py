"""Operating the running daemon: the control socket's commands and reload.

``Admin.handle_control`` answers ``sstpctl`` and the status app (``sessions``, ``stats``,
``health``, ``kick``, ``drain``/``undrain``, ``cert``, ``renew``, ``reload``); the RADIUS
Disconnect-Request listener ends sessions through ``dae_disconnect``. ``reload`` (also
SIGHUP, and the ACME manager after a renewal) validates everything (configuration file,
users file, certificate and key) before it changes anything; which keys a reload can
apply at all is the table in ``aio.reload``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sstpd import __version__, certs
from sstpd.aio.control import error as control_error
from sstpd.aio.dae import criteria_from_json
from sstpd.aio.notify import sd_notify
from sstpd.aio.reload import live_config
from sstpd.aio.server import read_users
from sstpd.aio.settings import RuntimeSettings
from sstpd.aio.tls import cert_summary, configure_tls, make_ssl_context
from sstpd.aio.workers_link import decode_challenge
from sstpd.config import Config, load_config
from sstpd.errors import SstpdError
from sstpd.proto import aaa, radius
from sstpd.proto.datapath import Counters
from sstpd.proto.sstp.constants import HashProtocol
from sstpd.records import (
    AdmissionRecord,
    CertificateRecord,
    CertRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    ReloadRecord,
    StatsRecord,
    sessions_to_json,
)
from sstpd.records_link import ChallengeRecord, DaeRecord, SessionTraffic, traffic_to_json

if TYPE_CHECKING:
    from sstpd.aio.acme import AcmeManager
    from sstpd.aio.daemon import Daemon

log = logging.getLogger("sstpd")

POOL_LOW = 0.9  # health warns when this share of the pool is in use


def _reason(exc: Exception) -> str:
    """A one-line reason for a failed reload, for the log and the ctl caller."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


class Admin:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.server = srv = daemon.server
        # what the answers read, under the names they have always used
        self.loop = srv.loop
        self.stats = srv.stats
        self.connections = srv.connections
        self.pool = srv.pool
        self.budget = srv.budget
        self.throttle = srv.throttle
        self.listeners = daemon.listeners
        self.nofile = srv.nofile
        self.started_at = daemon.started_at
        self.started_wall = daemon.started_wall

    @property
    def config(self) -> Config:
        return self.server.config

    @property
    def draining(self) -> bool:
        return self.server.draining

    @property
    def authenticated_count(self) -> int:
        return self.server.authenticated_count

    @property
    def acme(self) -> AcmeManager | None:
        return self.daemon.acme

    @property
    def cert_summary(self) -> dict[str, Any] | None:
        return self.daemon.cert_summary

    def refusal(self) -> str:
        return self.server.refusal()

    def handle_control(self, req: dict[str, Any]) -> dict[str, Any]:
        """One control request (already checked to be a known command) -> its answer."""
        cmd = req["cmd"]
        if cmd == "health":
            return {"ok": True, **self.health().to_json()}
        if cmd == "sessions":
            now = self.loop.time()
            rows = [p.describe(now) for p in self.connections if p.is_open]
            return {"ok": True, **sessions_to_json(sorted(rows, key=lambda r: r.id))}
        if cmd == "stats":
            return {"ok": True, **self.snapshot().to_json()}
        if cmd == "traffic":  # from the supervisor only (workers.LINK_COMMANDS)
            return {"ok": True, **traffic_to_json(self.traffic())}
        if cmd == "kick":
            return self.kick(req.get("id"), req.get("user"))
        if cmd == "reload":
            return self.reload()
        if cmd in ("drain", "undrain"):
            return self.set_draining(cmd == "drain")
        if cmd == "cert":
            return {"ok": True, **self.cert_status().to_json()}
        if cmd == "dae":  # from the supervisor only (workers.LINK_COMMANDS)
            ended = self.dae_disconnect(criteria_from_json(req))
            return {"ok": True, **DaeRecord(ended=ended).to_json()}
        if cmd == "acme-challenge":  # from the supervisor's ACME manager only
            return self.acme_challenge(req)
        if cmd == "renew":
            if self.acme is None:
                return control_error("ACME is not configured (no [acme] names)")
            return {"ok": True, **self.acme.renew_now().to_json()}
        return control_error(f"unknown command {cmd!r}")

    def traffic(self) -> list[SessionTraffic]:
        """The ``traffic`` answer's rows: the counters of each open session."""
        rows = []
        for p in self.connections:
            if p.is_open:
                c = p.session.counters
                rows.append(
                    SessionTraffic(p.id, c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets)
                )
        return rows

    def cert_status(self) -> CertRecord:
        """The ``cert`` answer: the served certificate and the ACME manager's state
        (with workers the supervisor's; a worker's answer has its index and how many
        TLS-ALPN-01 validations its router answered)."""
        role = self.daemon.role
        summary = self.cert_summary
        return CertRecord(
            certificate=CertificateRecord.from_json(summary) if summary is not None else None,
            path=self.config.server.certificate if summary is not None else "",
            acme=self.acme.status() if self.acme is not None else None,
            worker=role.index if role is not None else 0,
            challenge_handshakes=self.daemon.router.challenge_handshakes,
        )

    def acme_challenge(self, req: dict[str, Any]) -> dict[str, Any]:
        """A worker installs (or removes) the TLS-ALPN-01 answer the supervisor's ACME
        manager sends, before the CA validates on whichever worker it reaches."""
        name, pems = decode_challenge(req)
        router = self.daemon.router
        if pems is None:
            router.remove_challenge(name)
            log.debug("ACME: challenge for %s removed", name)
        else:
            router.add_challenge(name, *pems)
            log.info("ACME: answering the TLS-ALPN-01 challenge for %s", name)
        return {"ok": True, **ChallengeRecord(pending=tuple(router.pending)).to_json()}

    def health(self) -> HealthRecord:
        why = self.refusal()
        status = {"": "ok", "draining": "draining", "shutting down": "stopping"}.get(why, "full")
        pool = self.pool
        free = pool.size - pool.in_use
        warnings = []
        if free <= 0:
            warnings.append(f"address pool full ({pool.in_use}/{pool.size})")
            if status == "ok":
                status = "pool_full"
        elif pool.in_use >= POOL_LOW * pool.size:
            warnings.append(f"address pool nearly full ({pool.in_use}/{pool.size})")
        return HealthRecord(
            status=status,
            accepting=status == "ok",
            draining=self.draining,
            pool_free=free,
            warnings=tuple(warnings),
        )

    def snapshot(self) -> StatsRecord:
        """The ``stats`` answer: counters since start, closed sessions included."""
        st = self.stats
        live = [p.session.counters for p in self.connections]
        # every per-session counter (``Counters``) is a ``stats`` key of the same name
        traffic: dict[str, Any] = {
            f.name: int(getattr(st.closed, f.name)) + sum(int(getattr(c, f.name)) for c in live)
            for f in fields(Counters)
        }

        sessions = sum(1 for p in self.connections if p.is_open)
        not_after = (self.cert_summary or {}).get("not_after")
        pool6 = self.server.pool6
        return StatsRecord(
            version=__version__,
            health=self.health(),
            started_at=round(self.started_wall, 3),
            uptime=round(self.loop.time() - self.started_at, 3),
            sessions=sessions,
            handshakes_in_progress=len(self.connections) - sessions,
            max_sessions=self.config.server.max_sessions,
            handshakes={o.value: n for o, n in st.handshakes.items()},
            auth_failures=st.auth_failures,
            crypto_binding_failures=st.crypto_binding_failures,
            **traffic,
            tun_offload=self.daemon.tun.vnet_hdr,
            read_moderations=self.server.moderator.engaged,
            tun_no_route=st.tun_no_route,
            admission=AdmissionRecord(
                internal_errors=st.internal_errors,
                authenticated=self.authenticated_count,  # what max_sessions counts
                pending=self.budget.count,
                pending_sources=len(self.budget.by_source),
                pending_total_limit=self.budget.total,
                pending_per_source_limit=self.budget.per_source,
                auth_delayed=st.auth_delayed,
                auth_blocks=self.throttle.blocks,
                auth_blocked=self.throttle.blocked_count(self.loop.time()),
                accept_errors=sum(getattr(x, "accept_errors", 0) for x in self.listeners),
                open_files_limit=self.nofile,
            ),
            handshake_latency=st.latency.record(),
            pool_size=self.pool.size,
            pool_in_use=self.pool.in_use,
            pool6_size=pool6.size if pool6 is not None else 0,  # 0: IPv4 only
            pool6_in_use=pool6.in_use if pool6 is not None else 0,
            reloads=st.reloads,
            reload_failures=st.reload_failures,
            certificate_not_after=float(not_after) if not_after is not None else None,
            acme_renewals=self.acme.renewals if self.acme else 0,
            acme_renewal_failures=self.acme.renewal_failures if self.acme else 0,
        )

    def kick(self, sid: object, user: object) -> dict[str, Any]:
        """Graceful Call Disconnect of session ``sid`` or of every session of ``user``."""
        if (sid is None) == (user is None):
            return control_error('kick needs either "id" or "user"')
        if sid is not None and (not isinstance(sid, int) or isinstance(sid, bool)):
            return control_error('"id" must be an integer')
        if user is not None and (not isinstance(user, str) or not user):
            return control_error('"user" must be a non-empty string')
        targets = [
            p
            for p in self.connections
            if p.is_open and (p.id == sid if sid is not None else p.session.username == user)
        ]
        if not targets:
            what = f"session {sid}" if sid is not None else f"session of user {user!r}"
            return control_error(f"no open {what}")
        for p in sorted(targets, key=lambda p: p.id):
            log.info("[%d] %s user %r kicked", p.id, p.peer, p.session.username)
            p.terminate_cause = radius.TERMINATE_ADMIN_RESET
            p.disconnect("disconnected by the administrator")
        return {"ok": True, **KickRecord(kicked=tuple(sorted(p.id for p in targets))).to_json()}

    def dae_disconnect(self, criteria: aaa.DisconnectCriteria) -> int:
        """End the open sessions a Disconnect-Request names; how many there were."""
        targets = [
            p
            for p in self.connections
            if p.is_open
            and criteria.matches(
                p.session.username,
                p.acct_session_id,
                p.session.peer_address,
                p.session.prefix6,
                p.session.peer_iid,
            )
        ]
        for p in targets:
            log.info("[%d] %s user %r disconnected by RADIUS", p.id, p.peer, p.session.username)
            p.terminate_cause = radius.TERMINATE_ADMIN_RESET
            p.disconnect("disconnected by RADIUS (Disconnect-Request)")
        return len(targets)

    def set_draining(self, on: bool) -> dict[str, Any]:
        if self.server.stopping:
            return control_error("shutting down")
        sessions = sum(1 for p in self.connections if p.is_open)
        if on != self.draining:
            self.server.draining = on
            if on:
                log.info("draining: refusing new sessions, %d sessions continue", sessions)
                sd_notify(f"STATUS=draining, {sessions} sessions")
            else:
                log.info("accepting new sessions again")
                sd_notify("STATUS=accepting sessions")
        return {"ok": True, **DrainRecord(health=self.health(), sessions=sessions).to_json()}

    def reload(self) -> dict[str, Any]:
        """SIGHUP and ``reload``: re-read the configuration file, the users file, the
        certificate and key. Everything is checked first; on any problem nothing changes
        and the reason is returned. New sessions get the new settings; established
        sessions keep theirs. Settings that need a restart are reported, not applied."""
        d, srv = self.daemon, self.server
        old = srv.config
        try:
            new = d.localize(load_config(d.config_path)) if d.config_path else old
            config, changed, needs_restart = live_config(old, new)
            user_map = read_users(config.auth.users_file)
            if config.server.tls:
                certs.verify_key_pair(config.server.certificate, config.server.key)
                make_ssl_context(config)  # chain and ciphers load: checked on a spare context
            settings = RuntimeSettings.from_config(config)
            if d.ssl is not None:
                configure_tls(d.ssl, config)
        except (SstpdError, OSError, ssl.SSLError, ValueError) as exc:
            srv.stats.reload_failures += 1
            reason = _reason(exc)
            log.error("reload rejected, keeping the running configuration: %s", reason)
            if d.ssl is not None:
                with contextlib.suppress(SstpdError, OSError, ssl.SSLError, ValueError):
                    configure_tls(d.ssl, old)  # in case the live context took a part
            return control_error(reason)
        hashes = settings.cert_hashes
        if hashes != srv.cert_hashes:
            changed.append("certificate")
        if user_map != srv.users:
            changed.append("users")
        srv.apply(settings, user_map)
        if d.dae is not None:
            d.dae.config = config.radius  # clients and secrets; the address needs a restart
        d.cert_summary = cert_summary(config)
        logging.getLogger().setLevel(config.log.level.upper())
        srv.stats.reloads += 1
        sha256 = hashes.get(HashProtocol.SHA256, b"").hex()
        log.info(
            "reloaded %s: %d users, certificate sha256 %s, changed: %s",
            d.config_path or "the built-in configuration",
            len(user_map),
            sha256 or "-",
            ", ".join(changed) or "nothing",
        )
        for item in needs_restart:
            log.warning("reload: %s needs a restart to take effect", item)
        answer = ReloadRecord(
            changed=tuple(changed),
            needs_restart=tuple(needs_restart),
            users=len(user_map),
            cert_sha256=sha256,
        )
        return {"ok": True, **answer.to_json()}
