"""``Admin.snapshot`` (the ``stats`` answer) over a fake daemon: every per-session counter
is the closed sessions' total plus the live sessions', and the answer reads back."""

from __future__ import annotations

from dataclasses import fields
from ipaddress import IPv4Network
from types import SimpleNamespace
from typing import Any

from sstpd.aio.admin import Admin
from sstpd.aio.stats import Stats
from sstpd.config import Config
from sstpd.proto.datapath import Counters
from sstpd.proto.guard import AuthThrottle, PendingBudget
from sstpd.proto.pool import AddressPool
from sstpd.records import StatsRecord


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
