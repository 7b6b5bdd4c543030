"""``Admin`` over a fake daemon: in ``snapshot`` (the ``stats`` answer) every per-session
counter is the closed sessions' total plus the live sessions', and the answer reads back;
the ``cert`` and ``kick`` answers read back as their records."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from ipaddress import IPv4Network
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sstpd import certs
from sstpd.aio.admin import Admin
from sstpd.aio.stats import Stats
from sstpd.config import Config
from sstpd.proto.datapath import Counters
from sstpd.proto.guard import AuthThrottle, PendingBudget
from sstpd.proto.pool import AddressPool
from sstpd.records import CertRecord, DrainRecord, KickRecord, StatsRecord


def counters(base: int) -> Counters:
    """A distinct value in every field, so a mixed-up name shows."""
    return Counters(**{f.name: base + i for i, f in enumerate(fields(Counters))})


def fake_daemon() -> Any:
    stats = Stats()
    stats.closed = counters(1000)
    live = [
        SimpleNamespace(is_open=True, session=SimpleNamespace(counters=counters(100))),
        SimpleNamespace(is_open=False, session=SimpleNamespace(counters=counters(10))),
    ]
    server = SimpleNamespace(
        loop=SimpleNamespace(time=lambda: 50.0),
        stats=stats,
        connections=live,
        pool=AddressPool(IPv4Network("10.9.0.0/29")),
        pool6=None,
        budget=PendingBudget(64, 8),
        throttle=AuthThrottle(),
        nofile=1024,
        config=Config(),
        draining=False,
        authenticated_count=1,
        refusal=lambda: "",
        moderator=SimpleNamespace(engaged=7),
    )
    return SimpleNamespace(
        server=server,
        listeners=[],
        started_at=20.0,
        started_wall=1_700_000_000.0,
        acme=None,
        cert_summary=None,
        tun=SimpleNamespace(vnet_hdr=True),
    )


def test_every_session_counter_is_closed_plus_live_sessions() -> None:
    record = Admin(fake_daemon()).snapshot()
    answer = record.to_json()
    for i, f in enumerate(fields(Counters)):
        assert answer[f.name] == (1000 + i) + (100 + i) + (10 + i), f.name
    assert answer["sessions"] == 1 and answer["handshakes_in_progress"] == 1
    assert answer["uptime"] == 30.0 and answer["tun_offload"] is True
    assert answer["read_moderations"] == 7
    assert answer["pool_size"] == 6 and answer["pool6_size"] == 0
    assert StatsRecord.from_json(answer) == record


def test_every_session_counter_is_a_stats_field() -> None:
    """A new ``Counters`` field needs its ``StatsRecord`` field (the ``stats`` key)."""
    stats_fields = {f.name for f in fields(StatsRecord)}
    assert {f.name for f in fields(Counters)} <= stats_fields


def test_cert_answer_is_the_served_certificate_and_this_workers_validations(
    tmp_path: Path,
) -> None:
    crt, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    certs.ensure_certificate(crt, key, "vpn.example.test", ["vpn.example.test"])
    d = fake_daemon()
    d.server.config = dataclasses.replace(
        d.server.config, server=dataclasses.replace(d.server.config.server, certificate=crt)
    )
    d.cert_summary = certs.certificate_summary(crt)
    d.role = SimpleNamespace(index=1)
    d.router = SimpleNamespace(challenge_handshakes=2)
    answer = Admin(d).handle_control({"cmd": "cert"})
    rec = CertRecord.from_json(answer)
    assert answer["ok"] is True and rec.path == crt and rec.acme is None
    assert rec.certificate is not None and rec.certificate.names == ("vpn.example.test",)
    assert rec.certificate.sha256 == d.cert_summary["sha256"] and rec.certificate.self_signed
    assert rec.worker == 1 and rec.challenge_handshakes == 2 and rec.workers == ()


def test_kick_answers_the_ids_it_disconnected_or_refuses() -> None:
    d = fake_daemon()
    ended: list[int] = []

    def conn(i: int, user: str, is_open: bool = True) -> SimpleNamespace:
        c = SimpleNamespace(id=i, is_open=is_open, peer="p", session=SimpleNamespace(username=user))
        c.disconnect = lambda why: ended.append(i)
        return c

    d.server.connections = [conn(9, "bob"), conn(4, "bob"), conn(5, "eve"), conn(6, "bob", False)]
    admin = Admin(d)
    answer = admin.handle_control({"cmd": "kick", "user": "bob"})
    assert KickRecord.from_json(answer) == KickRecord(kicked=(4, 9)) and answer["ok"] is True
    assert sorted(ended) == [4, 9]
    assert admin.handle_control({"cmd": "kick", "id": 6}) == {
        "ok": False,
        "error": "no open session 6",
    }
    assert admin.handle_control({"cmd": "kick", "id": "5"})["ok"] is False


def test_drain_answers_the_health_and_the_sessions_that_continue() -> None:
    d = fake_daemon()
    d.server.stopping = False
    d.server.refusal = lambda: "draining" if d.server.draining else ""
    admin = Admin(d)
    answer = admin.handle_control({"cmd": "drain"})
    assert answer["ok"] is True and d.server.draining is True
    rec = DrainRecord.from_json(answer)
    assert rec.sessions == 1  # the open one of the two connections
    assert (rec.health.status, rec.health.accepting, rec.health.draining) == (
        "draining",
        False,
        True,
    )
    undrained = DrainRecord.from_json(admin.handle_control({"cmd": "undrain"}))
    assert undrained.health.status == "ok" and undrained.sessions == 1
    d.server.stopping = True
    assert admin.handle_control({"cmd": "drain"}) == {"ok": False, "error": "shutting down"}


def test_renew_without_acme_is_refused() -> None:
    answer = Admin(fake_daemon()).handle_control({"cmd": "renew"})
    assert answer == {"ok": False, "error": "ACME is not configured (no [acme] names)"}
