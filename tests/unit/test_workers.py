"""The supervisor's arithmetic without processes: limit shares, session ids, the worker
count, and how the answers of several workers merge into one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from sstpd.aio import workers, workers_pool
from sstpd.aio.dae import criteria_from_json, criteria_to_json
from sstpd.aio.supervisor import Answers, Supervisor, Worker, records
from sstpd.aio.workers import WorkerRole, share, worker_count
from sstpd.aio.workers_pool import RoutedPool, RoutedPrefixPool
from sstpd.config import Config, ConfigError, parse_config
from sstpd.ctl import cert_text, sessions_table, stats_text
from sstpd.proto import aaa, radius
from sstpd.proto.pool import slice_pool
from sstpd.proto.pool6 import slice_prefixes
from sstpd.proto.radius import Attr, Code, RadiusPacket
from sstpd.records import (
    CertRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    ReloadRecord,
    SessionRecord,
    StatsRecord,
    WorkerCertRecord,
    sessions_from_json,
)
from sstpd.records_link import DaeRequest
from sstpd.status.metrics import render_metrics


def config(text: str = "") -> Config:
    return parse_config(f"[server]\ncertificate = '/x.crt'\nkey = '/x.key'\n{text}")


def role(index: int, count: int = 2, generation: int = 0) -> WorkerRole:
    part = slice_pool(IPv4Network("10.77.0.0/24"), count, [IPv4Address("10.77.0.1")])[index]
    return WorkerRole(index, count, generation, part, -1)


@pytest.mark.parametrize("total", [1, 2, 3, 64, 1000, 1001])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shares_add_up_to_the_total(total: int, count: int) -> None:
    parts = [share(total, i, count) for i in range(count)]
    assert sum(parts) == max(total, count)  # each worker admits at least one
    assert max(parts) - min(parts) <= 1


def test_a_worker_enforces_its_share_of_the_global_limits() -> None:
    c = config("max_sessions = 1001\n[limits]\npending_total = 100\npending_per_source = 7")
    w0, w1 = role(0).localize(c), role(1).localize(c)
    assert (w0.server.max_sessions, w1.server.max_sessions) == (501, 500)
    assert w0.limits.pending_total + w1.limits.pending_total == 100
    assert w0.limits.pending_per_source + w1.limits.pending_per_source == 7
    assert w0.auth == c.auth and w0.tunnel == c.tunnel  # nothing else changes


def test_session_ids_are_unique_across_workers_and_restarts() -> None:
    ids = [role(i, 3, g).session_id(n) for i in range(3) for g in range(3) for n in range(1, 500)]
    assert len(set(ids)) == len(ids)
    assert [role(0).session_id(n) for n in (1, 2, 3)] == [1, 3, 5]
    assert [role(1).session_id(n) for n in (1, 2, 3)] == [2, 4, 6]


def test_tun_names() -> None:
    assert role(0).tun_name("sstp0") == "sstp0"
    assert role(1).tun_name("sstp0") == "sstp0w1"


def test_worker_count() -> None:
    assert worker_count(config("workers = 1")) == 1
    assert worker_count(config("workers = 3")) == 3
    # 0 = one per CPU this process may run on
    assert worker_count(config("workers = 0")) == min(len(os.sched_getaffinity(0)), 253)
    # the pool must give each worker a client address
    tiny = config("workers = 4\n[tunnel]\npool = '10.9.0.0/30'\naddress = '10.9.0.1'")
    assert worker_count(tiny) == 1
    # [acme] runs with workers too (the supervisor runs the manager)
    two = config("workers = 2")
    acme = dataclasses.replace(two, acme=dataclasses.replace(two.acme, names=("vpn.example",)))
    assert worker_count(acme) == 2
    # an IPv6 pool is sliced too: it needs one /64 per worker besides the server's own
    v6 = config("workers = 2\n[tunnel]\nipv6_pool = '2001:db8:100::/56'")
    assert worker_count(v6) == 2
    v6 = config("workers = 3\n[tunnel]\nipv6_pool = '2001:db8:100::/63'")
    assert worker_count(v6) == 1  # two /64s, one of them the server's
    v6 = config("workers = 3\n[tunnel]\nipv6_pool = '2001:db8:100::/62'")
    assert worker_count(v6) == 3
    # the workers' IPv6 slices, from the environment the supervisor sets
    env = {workers.ENV_WORKER: "1/2/0", workers.ENV_CONTROL_FD: "7", workers.ENV_REGISTRY_FD: "8"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        r = WorkerRole.from_env(config("workers = 2\n[tunnel]\nipv6_pool = '2001:db8:100::/56'"))
    assert r.part6 is not None and r.part6.routes == [IPv6Network("2001:db8:100:80::/57")]


def test_interface_name_leaves_room_for_the_worker_suffix() -> None:
    with pytest.raises(ConfigError, match="worker suffix"):
        config("[tunnel]\ninterface = 'sstp-long-name'")
    assert config("workers = 1\n[tunnel]\ninterface = 'sstp-long-name'").server.workers == 1
    with pytest.raises(ConfigError, match="out of range"):
        config("workers = 65")


def _health(status: str = "ok", pool_free: int = 100, **kw: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "status": status,
        "accepting": status == "ok",
        "draining": False,
        "pool_free": pool_free,
        "warnings": [],
        **kw,
    }


def _stats(sessions: int, opened: int, latency: list[int]) -> dict[str, Any]:
    """A worker's ``stats`` answer, as its Admin sends it (a StatsRecord in JSON)."""
    zero = dict.fromkeys(
        (
            "handshakes_in_progress",
            "auth_failures",
            "crypto_binding_failures",
            "rx_packets",
            "tx_bytes",
            "tx_packets",
            "dropped_spoofed",
            "dropped_overflow",
            "tun_no_route",
            "reloads",
            "reload_failures",
            "pending",
            "pending_sources",
            "auth_delayed",
            "auth_blocks",
            "accept_errors",
            "internal_errors",
        ),
        0,
    )
    return {
        **_health(),
        **zero,
        "version": "x",
        "started_at": 1.0,
        "uptime": 2.0,
        "sessions": sessions,
        "authenticated": sessions,
        "max_sessions": 500,
        "pending_total_limit": 500,
        "pending_per_source_limit": 32,
        "auth_blocked": {"sources": 1, "users": 0},
        "handshakes": {"opened": opened, "refused": 1},
        "rx_bytes": 1000 * sessions,
        "open_files_limit": 1024 + sessions,
        "pool_size": 126,
        "pool_in_use": sessions,
        "handshake_latency": {
            "buckets": [[0.1, latency[0]], ["+Inf", latency[1]]],
            "sum": 0.5,
            "count": latency[1],
        },
        "certificate_not_after": 1.8e9,
        "workers": 1,
        "workers_running": 1,
        "worker_restarts": 0,
        "worker_sessions": {},
    }


def _merge_stats(sup: Supervisor, answers: Answers) -> dict[str, Any]:
    """The supervisor's merged ``stats``, as it sends it (``handle`` without the workers)."""
    return sup.merge_stats(records(StatsRecord, answers)).to_json()


def _merge_health(sup: Supervisor, answers: Answers) -> dict[str, Any]:
    return sup.merge_health(records(HealthRecord, answers)).to_json()


def _supervisor(tmp_path: Path) -> Supervisor:
    c = config(f"max_sessions = 1000\ncontrol_socket = '{tmp_path}/c.sock'")
    return Supervisor(c, None, 2)


def test_stats_merge(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        sup = _supervisor(tmp_path)
        w0, w1 = sup.workers
        # the throttle is the supervisor's (the workers' own figures are not used)
        for _ in range(10):
            sup.shared.registry.failed("192.0.2.9", "mallory", sup.loop.time())
        return _merge_stats(sup, [(w0, _stats(3, 5, [2, 5])), (w1, _stats(4, 6, [1, 6]))])

    st = asyncio.run(go())
    assert st["sessions"] == 7 and st["rx_bytes"] == 7000
    assert st["handshakes"] == {"opened": 11, "refused": 2}
    assert st["handshake_latency"] == {"buckets": [[0.1, 3], ["+Inf", 11]], "sum": 1.0, "count": 11}
    assert st["max_sessions"] == 1000  # the configured total, not a worker's share
    assert st["open_files_limit"] == 1027  # the smallest
    assert st["status"] == "ok" and st["pool_free"] == 200
    assert st["pending_per_source_limit"] == 64
    assert st["auth_blocked"] == {"sources": 1, "users": 1} and st["auth_blocks"] == 2
    assert st["certificate_not_after"] == 1.8e9
    assert (st["workers"], st["workers_running"], st["worker_restarts"]) == (2, 2, 0)
    assert st["worker_sessions"] == {"0": 3, "1": 4}
    # what sstpctl and /metrics read: the merged answer is a valid StatsRecord
    rec = StatsRecord.from_json(st)
    assert rec.sessions == 7 and rec.pool_size == 252 and rec.workers == 2
    line = next(x for x in stats_text(rec).splitlines() if x.startswith("workers"))
    assert line.split(None, 1)[1] == "2 of 2 running, 0 restarts; sessions w0 3, w1 4"
    metrics = render_metrics(rec)
    assert "sstpd_workers 2.0" in metrics and "sstpd_worker_restarts_total 0.0" in metrics
    assert "sstpd_sessions 7.0" in metrics


def test_a_dead_workers_counters_stay_in_the_merged_totals(tmp_path: Path) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        sup = _supervisor(tmp_path)
        w0, w1 = sup.workers
        before = _merge_stats(sup, [(w0, _stats(3, 5, [2, 5])), (w1, _stats(4, 6, [1, 6]))])
        # what ask_stats keeps of each stats answer
        w1.last_stats = StatsRecord.from_json(_stats(4, 6, [1, 6]))
        # dying: it does not answer, and is not retired yet
        dying = _merge_stats(sup, [(w0, _stats(3, 5, [2, 5])), (w1, None)])
        assert dying["rx_bytes"] == 7000 and dying["handshakes"] == before["handshakes"]
        assert dying["sessions"] == 3 and dying["workers_running"] == 1
        sup.shared.retire(w1.last_stats)  # worker 1 died; restarted, it counts anew
        w1.last_stats = None
        after = _merge_stats(sup, [(w0, _stats(3, 5, [2, 5])), (w1, _stats(0, 0, [0, 0]))])
        return before, after

    before, after = asyncio.run(go())
    assert after["rx_bytes"] == before["rx_bytes"] == 7000
    # the restarted worker's own one refusal comes on top
    assert before["handshakes"] == {"opened": 11, "refused": 2}
    assert after["handshakes"] == {"opened": 11, "refused": 3}
    assert after["handshake_latency"]["count"] == before["handshake_latency"]["count"] == 11
    assert after["handshake_latency"]["sum"] == before["handshake_latency"]["sum"] + 0.5
    assert after["sessions"] == 3 and after["pool_in_use"] == 3  # gauges are not retired
    assert StatsRecord.from_json(after).rx_bytes == 7000


def _worker_stats(index: int, **kw: Any) -> StatsRecord:
    """Worker ``index``'s typed ``stats``: distinct figures per worker, and ``kw``."""
    base = StatsRecord.from_json(_stats(2 + index, 4 + index, [index, 4 + index]))
    assert base.admission is not None
    admission = dataclasses.replace(
        base.admission, auth_delayed=10 * (index + 1), accept_errors=index, pending=index + 1
    )
    traffic = {"rx_bytes": 100 + index, "tx6_packets": 7 * (index + 1), "reloads": 1}
    return dataclasses.replace(base, admission=admission, **traffic, **kw)


def test_stats_merge_of_two_typed_worker_answers(tmp_path: Path) -> None:
    """Counters and gauges summed, the smallest open files limit, the worst status, the
    first worker's certificate expiry and offload, the supervisor's own figures."""
    w0_health = HealthRecord(status="ok", accepting=True, pool_free=60, warnings=("low",))
    w1_health = HealthRecord(status="pool_full", accepting=False, pool_free=0)

    async def go() -> tuple[StatsRecord, StatsRecord]:
        sup = _supervisor(tmp_path)
        w0, w1 = sup.workers
        w1.restarts = 2
        a = _worker_stats(0, health=w0_health, tun_offload=True)
        b = _worker_stats(1, health=w1_health, certificate_not_after=2e9)
        merged = sup.merge_stats([(w0, a), (w1, b)])
        none = sup.merge_stats([(w0, None), (w1, None)])
        return merged, none

    m, none = asyncio.run(go())
    assert (m.sessions, m.pool_in_use, m.pool_size) == (5, 5, 252)
    assert (m.rx_bytes, m.tx6_packets, m.reloads) == (201, 21, 2)
    assert m.handshakes == {"opened": 9, "refused": 2}
    assert m.handshake_latency.buckets == ((0.1, 1), (math.inf, 9))
    assert (m.handshake_latency.sum, m.handshake_latency.count) == (1.0, 9)
    assert m.health == HealthRecord(
        status="pool_full",
        accepting=False,
        draining=False,
        pool_free=60,
        warnings=("worker 0: low",),
    )
    assert m.certificate_not_after == 1.8e9 and m.tun_offload is True  # worker 0's
    assert m.admission is not None
    assert (m.admission.auth_delayed, m.admission.accept_errors) == (30, 1)
    assert (m.admission.pending, m.admission.pending_total_limit) == (3, 1000)
    assert m.admission.open_files_limit == 1026  # the smaller: worker 0's 1024 + 2
    assert m.admission.auth_blocks == 0 and m.admission.auth_blocked == {"sources": 0, "users": 0}
    assert (m.max_sessions, m.workers, m.workers_running, m.worker_restarts) == (1000, 2, 2, 2)
    assert m.worker_sessions == {"0": 2, "1": 3} and m.worker_pids == {}
    assert StatsRecord.from_json(m.to_json()) == m  # what the supervisor sends reads back
    # no worker answers: still a stats answer sstpctl and /metrics read, with nothing in it
    assert StatsRecord.from_json(none.to_json()) == none
    assert (none.sessions, none.rx_bytes, none.workers_running) == (0, 0, 0)
    assert none.handshake_latency.count == 0 and none.health.status == "full"


def test_drain_merges_the_workers_drain_records(tmp_path: Path) -> None:
    def drained(sessions: int, *warnings: str) -> dict[str, Any]:
        h = HealthRecord(
            status="draining", accepting=False, draining=True, pool_free=50, warnings=warnings
        )
        return {"ok": True, **DrainRecord(health=h, sessions=sessions).to_json()}

    ok = HealthRecord(status="ok", accepting=True, pool_free=50)
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [drained(3), {"ok": True, **DrainRecord(health=ok, sessions=3).to_json()}],
        1: [drained(4, "address pool nearly full (230/253)"), {"ok": True, "sessions": 1}],
    }

    async def go() -> tuple[dict[str, Any], dict[str, Any], bool]:
        sup = _supervisor(tmp_path)
        _answering(sup, answers)
        drain = await sup.handle({"cmd": "drain"})
        draining = sup.draining
        undrain = await sup.handle({"cmd": "undrain"})  # worker 1's answer is malformed
        return drain, undrain, draining

    drain, undrain, draining = asyncio.run(go())
    assert draining
    assert drain == {
        "ok": True,
        "status": "draining",
        "accepting": False,
        "draining": True,
        "pool_free": 100,
        "warnings": ["worker 1: address pool nearly full (230/253)"],
        "sessions": 7,
    }
    rec = DrainRecord.from_json(undrain)
    assert rec.sessions == 3 and rec.health.status == "ok" and not rec.health.draining
    assert rec.health.warnings == ("worker 1 not running (restarting)",)


def test_health_merge_reports_the_worst_and_missing_workers(tmp_path: Path) -> None:
    async def go() -> list[dict[str, Any]]:
        sup = _supervisor(tmp_path)
        w0, w1 = sup.workers
        return [
            _merge_health(sup, [(w0, _health()), (w1, _health("full"))]),
            _merge_health(sup, [(w0, _health("pool_full", 0)), (w1, _health("draining"))]),
            _merge_health(sup, [(w0, _health()), (w1, None)]),
            _merge_health(sup, [(w0, None), (w1, None)]),
        ]

    full, draining, one_down, none = asyncio.run(go())
    assert full["status"] == "full" and not full["accepting"]
    assert draining["status"] == "draining"
    assert one_down["status"] == "ok" and one_down["warnings"] == [
        "worker 1 not running (restarting)"
    ]
    assert none["status"] == "full" and "no worker is running" in none["warnings"]


# one row of a worker's ``sessions`` answer (a SessionRecord's JSON)
SESSION_ROW: dict[str, Any] = {
    "id": 2,
    "user": "a",
    "peer": "p",
    "peer_host": "p",
    "peer_port": 1,
    "address": "10.77.0.128",
    "connected_since": 0.0,
    "duration": 1.0,
    "rx_packets": 0,
    "rx_bytes": 0,
    "tx_packets": 0,
    "tx_bytes": 0,
    "dropped": 0,
    "auth_method": "pap",
    "tls_version": "",
    "tls_cipher": "",
    "binding_hash": "",
    "cert_hash": "",
    "worker": 1,
}


def _sessions(worker: int, *ids: int) -> dict[str, Any]:
    rows = [{**SESSION_ROW, "id": i, "worker": worker, "rx_bytes": 10 * i} for i in ids]
    return {"ok": True, "sessions": rows}


def test_kick_and_sessions_merge(tmp_path: Path) -> None:
    answers = {
        0: [{"ok": False, "error": "no open session 4"}, _sessions(0, 3)],
        1: [{"ok": True, "kicked": [4]}, _sessions(1, 4, 2)],
    }

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        sup = _supervisor(tmp_path)
        _answering(sup, answers)
        kick = await sup.handle({"cmd": "kick", "id": 4})
        rows = await sup.handle({"cmd": "sessions"})
        gone = await sup.handle({"cmd": "kick", "id": 9})
        return kick, rows, gone

    kick, rows, gone = asyncio.run(go())
    assert kick == {"ok": True, "kicked": [4]}
    assert [r["id"] for r in rows["sessions"]] == [2, 3, 4]
    assert gone == {"ok": False, "error": "no worker answers"}
    # what sstpctl and the status app read: the rows as the workers wrote them, by id
    merged = sessions_from_json(rows)
    assert [(r.id, r.worker, r.rx_bytes) for r in merged] == [(2, 1, 20), (3, 0, 30), (4, 1, 40)]
    assert rows["sessions"][0] == {**SessionRecord.from_json(SESSION_ROW).to_json(), "rx_bytes": 20}


def test_a_malformed_sessions_answer_counts_as_a_worker_not_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker 1's rows do not read as SessionRecords (a row without "user"): logged, and
    its rows left out as if it were down; worker 0's are listed and their traffic kept for
    the Accounting-Stops should it die."""
    bad = _sessions(1, 5)
    del bad["sessions"][0]["user"]
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [_sessions(0, 7, 3), _sessions(0, 3)],
        1: [bad, {"ok": True, "sessions": "none"}],
    }
    kept: list[list[SessionRecord]] = []

    async def go() -> list[dict[str, Any]]:
        sup = _supervisor(tmp_path)
        _answering(sup, answers)
        sup.shared.traffic = kept.append  # type: ignore[method-assign]
        return [await sup.handle({"cmd": "sessions"}) for _ in range(3)]

    caplog.set_level(logging.WARNING, logger="sstpd")
    first, second, none = asyncio.run(go())
    assert [r["id"] for r in first["sessions"]] == [3, 7]
    assert [r["id"] for r in second["sessions"]] == [3]
    assert none == {"ok": True, "sessions": []}  # no worker answers: an empty list
    assert [[r.id for r in rows] for rows in kept] == [[3, 7], [3], []]
    assert all(isinstance(r, SessionRecord) for rows in kept for r in rows)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "worker 1: unexpected answer: SessionRecord: no 'user'",
        'worker 1: unexpected answer: sessions: no "sessions" list',
    ]


def _answering(sup: Supervisor, answers: dict[int, list[dict[str, Any] | None]]) -> None:
    """Each worker answers its list in order, then nothing (a worker that is down)."""

    def fake(w: Worker) -> Any:
        queue = list(answers[w.index])

        async def call(req: dict[str, Any]) -> dict[str, Any] | None:
            return queue.pop(0) if queue else None

        return call

    for w in sup.workers:
        w.call = fake(w)  # type: ignore[method-assign]


def test_kick_merges_both_workers_ids_and_ignores_a_malformed_answer(tmp_path: Path) -> None:
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [{"ok": True, "kicked": [7, 3]}, {"ok": True, "kicked": ["x"]}],
        1: [{"ok": True, "kicked": [5]}, {"ok": False, "error": "no open session 9"}],
    }

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        sup = _supervisor(tmp_path)
        _answering(sup, answers)
        return await sup.handle({"cmd": "kick", "user": "a"}), await sup.handle(
            {"cmd": "kick", "id": 9}
        )

    both, refused = asyncio.run(go())
    assert KickRecord.from_json(both) == KickRecord(kicked=(3, 5, 7))
    assert refused == {"ok": False, "error": "no open session 9"}


def _reload_answer(changed: tuple[str, ...] = ("users",)) -> dict[str, Any]:
    rec = ReloadRecord(changed=changed, needs_restart=("x: a -> b",), users=3, cert_sha256="ab")
    return {"ok": True, **rec.to_json()}


def test_reload_merge_counts_the_workers_and_names_the_one_that_failed(tmp_path: Path) -> None:
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [_reload_answer(), _reload_answer(), {"ok": True, "users": "3"}],
        1: [_reload_answer(), {"ok": False, "error": "TLS: bad key"}, _reload_answer()],
    }

    async def go() -> list[dict[str, Any]]:
        sup = _supervisor(tmp_path)
        _answering(sup, answers)
        return [await sup.handle({"cmd": "reload"}) for _ in range(4)]

    ok, refused, malformed, down = asyncio.run(go())
    rec = ReloadRecord.from_json(ok)
    assert rec.workers == 2 and rec.changed == ("users",) and rec.needs_restart == ("x: a -> b",)
    assert ok["changed"] == ["users"] and ok["workers"] == 2  # the wire keys sstpctl reads
    assert refused == {"ok": False, "error": "worker 1: TLS: bad key"}
    assert malformed == {"ok": False, "error": "worker 0: failed"}
    assert down == {"ok": False, "error": "worker 0: does not answer"}


def test_cert_merge_shows_a_worker_that_does_not_answer(tmp_path: Path) -> None:
    worker = CertRecord(certificate=None, path="", acme=None, worker=0, challenge_handshakes=4)
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [{"ok": True, **worker.to_json()}],
        1: [],
    }

    async def go() -> dict[str, Any]:
        sup = _supervisor(tmp_path)  # /x.crt does not exist: no certificate
        _answering(sup, answers)
        return await sup.handle({"cmd": "cert"})

    merged = CertRecord.from_json(asyncio.run(go()))
    assert merged.certificate is None and merged.path == "" and merged.acme is None
    assert merged.workers == (
        WorkerCertRecord(worker=0, running=True, sha256="", challenge_handshakes=4),
        WorkerCertRecord(worker=1, running=False),
    )
    assert merged.challenge_handshakes == 4
    text = cert_text(merged)
    assert "worker 0     sha256 -, 4 TLS-ALPN-01" in text and "worker 1     not running" in text


def test_sessions_table_shows_the_worker_column_with_several_workers() -> None:
    row = SESSION_ROW
    assert sessions_table([SessionRecord.from_json(row)]).splitlines()[0].split()[-1] == "WORKER"
    assert "WORKER" not in sessions_table([SessionRecord.from_json({**row, "worker": 0})])


def test_serve_with_several_workers_runs_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    from sstpd.aio import daemon

    calls: list[tuple[str | None, int]] = []
    monkeypatch.setattr(daemon, "supervise", lambda c, p, n: calls.append((p, n)) or 0)
    path = "/etc/x.toml"
    assert daemon.run(config("workers = 2"), path) == 0
    assert calls == [(path, 2)]


class FakeRoutes:
    """The kernel's /32 routes as the workers see them: one holder per address."""

    def __init__(self) -> None:
        self.routes: dict[IPv4Address, int] = {}

    def add(self, address: IPv4Address, ifindex: int) -> None:
        if address in self.routes:
            raise FileExistsError(17, "exists")
        self.routes[address] = ifindex

    def delete(self, address: IPv4Address, ifindex: int) -> None:
        if self.routes.get(address) != ifindex:
            raise ProcessLookupError(3, "no such route")
        del self.routes[address]

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch, kind: str) -> FakeRoutes:
        """A fake kernel for the workers' ``kind`` routes (``host``: /32, ``prefix``:
        /64), with TUN devices t0 and t1 at indexes 10 and 11."""
        kernel = cls()
        monkeypatch.setattr(workers_pool.route, f"add_{kind}_route", kernel.add)
        monkeypatch.setattr(workers_pool.route, f"del_{kind}_route", kernel.delete)
        monkeypatch.setattr(workers_pool.socket, "if_nametoindex", {"t0": 10, "t1": 11}.__getitem__)
        return kernel


def _routed_pools(
    monkeypatch: pytest.MonkeyPatch, claim: bool
) -> tuple[FakeRoutes, RoutedPool, RoutedPool]:
    kernel = FakeRoutes.install(monkeypatch, "host")
    net, server = IPv4Network("10.77.0.0/24"), IPv4Address("10.77.0.1")
    parts = slice_pool(net, 2, [server])
    pools = [
        RoutedPool(net, exclude=[server], part=p, ifname=f"t{i}", claim_dynamic=lambda: claim)
        for i, p in enumerate(parts)
    ]
    return kernel, pools[0], pools[1]


def test_a_static_address_is_held_by_one_worker_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, w0, w1 = _routed_pools(monkeypatch, claim=False)
    static = IPv4Address("10.77.0.200")
    assert w0.allocate(static) == static and kernel.routes == {static: 10}
    assert w1.allocate(static) is None and w1.in_use == 0  # refused, nothing held
    w0.release(static)
    assert kernel.routes == {}
    assert w1.allocate(static) == static and kernel.routes == {static: 11}
    # dynamic addresses need no route without RADIUS: the slice routes cover them
    assert w0.allocate() is not None and kernel.routes == {static: 11}


def test_with_radius_a_framed_address_in_another_slice_is_skipped_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel, w0, w1 = _routed_pools(monkeypatch, claim=True)
    framed = IPv4Address("10.77.0.128")  # the first dynamic address of worker 1's slice
    assert w0.allocate(framed) == framed
    got = w1.allocate()
    assert got is not None and got != framed and kernel.routes[got] == 11
    assert w1.in_use == 1  # the skipped address is not held by worker 1
    w0.release(framed)
    # worker 1 hands it out once it is free again (the cursor comes round to it)
    rest = [w1.allocate() for _ in range(w1.size - 1)]
    assert framed in rest and kernel.routes[framed] == 11
    assert w1.allocate() is None  # exhausted


def test_a_static_ipv6_prefix_is_held_by_one_worker_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = FakeRoutes.install(monkeypatch, "prefix")
    net, server = IPv6Network("2001:db8:77::/56"), IPv6Address("2001:db8:77::1")
    static = IPv6Network("2001:db8:77:42::/64")  # in worker 0's slice
    w0, w1 = (
        RoutedPrefixPool(net, exclude=[server], part=p, ifname=f"t{i}")
        for i, p in enumerate(slice_prefixes(net, 2, [server]))
    )
    for w in (w0, w1):
        w.set_reserved([static])
    assert w1.allocate(static) == static and kernel.routes == {static: 11}
    assert w0.allocate(static) is None and w0.in_use == 0  # refused, nothing held
    w1.release(static)
    assert kernel.routes == {}
    assert w0.allocate(static) == static and kernel.routes == {static: 10}
    # dynamic /64s need no route of their own (the slice route covers them) and never
    # collide with the reserved static one
    got = [w0.allocate() for _ in range(w0.size - 1)]
    assert static not in got and all(g is not None and g in w0.part for g in got)
    assert w0.allocate() is None and kernel.routes == {static: 10}


def test_dae_on_the_supervisor_asks_every_worker(tmp_path: Path) -> None:
    """A Disconnect-Request at the supervisor's DAE listener (a real UDP socket): the
    criteria go to every worker over the link (fake workers here), ACK when one ended a
    session, NAK 503 when none did; a retransmission while the workers are being asked
    gets the one answer, and the workers are asked once."""
    secret = b"dae-secret"
    asked: list[dict[str, Any]] = []
    release = asyncio.Event()

    async def go() -> tuple[list[RadiusPacket], int]:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        c = config(
            f"control_socket = '{tmp_path}/c.sock'\n[radius]\ndae_listen = '127.0.0.1:{port}'\n"
            f"[[radius.dae_client]]\naddress = '127.0.0.1'\nsecret = '{secret.decode()}'\n"
        )
        sup = Supervisor(c, None, 2)

        def fake(w: Worker) -> Any:
            async def call(req: dict[str, Any]) -> dict[str, Any] | None:
                asked.append({"worker": w.index, **req})
                await release.wait()
                if w.index == 0:
                    return None  # restarting: does not answer
                # worker 1 holds bob's session
                return {"ok": True, "ended": 1 if req["user"] == "bob" else 0}

            return call

        for w in sup.workers:
            w.call = fake(w)  # type: ignore[method-assign]
        await sup.dae.open()  # what run() does once every worker is ready
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Cl(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                replies.put_nowait(data)

        tr, _ = await loop.create_datagram_endpoint(Cl, remote_addr=("127.0.0.1", port))
        out = []
        for ident, user in ((1, b"bob"), (2, b"nobody")):
            pkt = RadiusPacket(Code.DISCONNECT_REQUEST, ident, attributes=[(Attr.USER_NAME, user)])
            data = radius.sign_request(pkt, secret)
            tr.sendto(data)
            await asyncio.sleep(0.1)
            tr.sendto(data)  # retransmitted while the workers think
            await asyncio.sleep(0.1)
            assert replies.empty()
            release.set()
            out.append(radius.decode(await asyncio.wait_for(replies.get(), 2)))
            await asyncio.sleep(0.1)
            assert replies.empty()  # one answer for both copies
            release.clear()
        tr.close()
        sup.dae.close()
        sup.control.close()
        return out, len(asked)

    (ack, nak), n = asyncio.run(go())
    assert ack.code == Code.DISCONNECT_ACK
    assert nak.code == Code.DISCONNECT_NAK
    assert nak.get_int(Attr.ERROR_CAUSE) == radius.ERROR_SESSION_NOT_FOUND
    assert n == 4  # two requests, each to both workers, no second round for the copies
    assert asked[0] == {
        "worker": 0,
        "cmd": "dae",
        "user": "bob",
        "session_id": None,
        "framed_ip": None,
        "framed_ipv6_prefix": None,
        "framed_interface_id": None,
    }


def test_dae_is_a_link_command_only() -> None:
    from sstpd.control import decode_request

    with pytest.raises(ValueError, match="unknown command"):
        decode_request(b'{"cmd": "dae", "user": "bob"}')
    assert decode_request(b'{"cmd": "dae", "user": "bob"}', workers.LINK_COMMANDS)["user"] == "bob"
    with pytest.raises(ValueError, match="names no session"):
        criteria_from_json({"cmd": "dae"})
    with pytest.raises(ValueError):
        criteria_from_json({"cmd": "dae", "framed_ip": "not-an-address"})
    c = criteria_from_json({"cmd": "dae", "user": "u", "framed_ip": "10.0.0.2"})
    assert criteria_to_json(c) == {
        "user": "u",
        "session_id": None,
        "framed_ip": "10.0.0.2",
        "framed_ipv6_prefix": None,
        "framed_interface_id": None,
    }


def test_dae_fanout_adds_up_the_workers_dae_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each worker gets the criteria as a DaeRequest; an answer that is not a DaeRecord
    (a count that is not an int, or negative) is logged and counts as no session ended,
    as does a refusal or a worker that does not answer."""
    answers: dict[int, list[dict[str, Any] | None]] = {
        0: [{"ok": True, "ended": 2}, {"ok": True, "ended": -1}, None],
        1: [{"ok": True, "ended": "1"}, {"ok": False, "error": "dae names no session"}, None],
    }
    asked: list[DaeRequest] = []

    async def go() -> list[int]:
        sup = _supervisor(tmp_path)
        queues = {i: list(a) for i, a in answers.items()}
        for w in sup.workers:

            async def call(req: dict[str, Any], w: Worker = w) -> dict[str, Any] | None:
                assert req["cmd"] == "dae"
                asked.append(DaeRequest.from_json(req))
                return queues[w.index].pop(0)

            w.call = call  # type: ignore[method-assign]
        c = aaa.DisconnectCriteria(user="bob", framed_ip=IPv4Address("10.77.0.9"))
        return [await sup.dae.disconnect(c) for _ in range(3)]

    caplog.set_level(logging.WARNING, logger="sstpd")
    assert asyncio.run(go()) == [2, 0, 0]
    assert {r.criteria() for r in asked} == {
        aaa.DisconnectCriteria(user="bob", framed_ip=IPv4Address("10.77.0.9"))
    }
    assert len(asked) == 6
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "worker 1: unexpected answer: DaeRecord.ended: str '1' is not int",
        "worker 0: unexpected answer: DaeRecord.ended: -1 is negative",
        "Disconnect-Request: worker 1: dae names no session",
        "Disconnect-Request: worker 0: does not answer",
        "Disconnect-Request: worker 1: does not answer",
    ]
