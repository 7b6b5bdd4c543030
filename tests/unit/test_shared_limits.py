"""The registry link between workers and the supervisor, both ends in one event loop over
real socketpairs (``aio.workers_link.RegistryLink`` <-> ``aio.shared.SharedLimits``), and the
Accounting-Stop of a dead worker's session sent to a scripted RADIUS peer on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import fields
from ipaddress import IPv4Address, IPv6Network
from typing import Any

from sstpd.aio import workers_link
from sstpd.aio.shared import Counted, SharedLimits
from sstpd.aio.workers_link import RegistryLink
from sstpd.config import Config, parse_config
from sstpd.proto import radius
from sstpd.proto.radius import Attr
from sstpd.records import AdmissionRecord, StatsRecord
from sstpd.records_link import SessionTraffic
from tests.unit.test_radius_client import SECRET, accept, start_peer


def config(extra: str = "") -> Config:
    return parse_config(
        "[server]\ncertificate = '/x.crt'\nkey = '/x.key'\n"
        "[auth]\nmax_sessions_per_user = 1\nsession_limit_action = 'replace'\n"
        "[limits]\nauth_fail_block_after = 3\nauth_fail_delay = 1.0\n" + extra
    )


class FakeWorker:
    """A worker's end of the link and what the supervisor pushed to it."""

    def __init__(self) -> None:
        self.pushed: list[dict[str, Any]] = []
        self.sup_end, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sup_end.setblocking(False)
        self.link = RegistryLink(mine.detach(), self.pushed.append)


async def attach(shared: SharedLimits, index: int, gen: int = 0) -> FakeWorker:
    w = FakeWorker()
    await shared.attach(index, gen, w.sup_end)
    await w.link.start()
    return w


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


def test_limits_and_throttle_across_two_worker_links() -> None:
    async def go() -> None:
        shared = SharedLimits(config())
        w0, w1 = await attach(shared, 0), await attach(shared, 1)
        # the per-user limit (1, replace): the second login, on worker 1, ends worker 0's
        a = await w0.link.ask({"op": "login", "id": 1, "user": "alice", "source": "s"})
        assert a == {"refuse": "", "seq": 1}
        b = await w1.link.ask({"op": "login", "id": 2, "user": "alice", "source": "s"})
        assert b is not None and b["refuse"] == ""
        await settle()
        assert w0.pushed == [{"push": "kick", "id": 1, "by": 2}] and w1.pushed == []
        w0.link.send({"op": "closed", "id": 1})
        await settle()
        assert set(shared.registry.sessions) == {2}
        # deny: the registry refuses, wherever the login lands
        shared.registry.action = "deny"
        c = await w0.link.ask({"op": "login", "id": 3, "user": "alice", "source": "s"})
        assert c is not None and c["refuse"] == "user 'alice' already has 1 sessions"
        # failures reported by both workers count together; the block reaches both
        for w in (w0, w1, w0):
            chk = await w.link.ask({"op": "check", "source": "192.0.2.7", "user": "x"})
            assert chk is not None and not chk["blocked"]
            w.link.send({"op": "failed", "source": "192.0.2.7", "user": "x"})
        await settle()
        assert chk["delay"] == 4.0  # the third failure's delay: 1, 2, 4
        block = {"push": "block", "source": "192.0.2.7", "for": 900.0}
        assert block in w0.pushed and block in w1.pushed
        late = await attach(shared, 1, 1)  # a restarted worker learns the blocks at once
        await settle()
        assert [p["source"] for p in late.pushed] == ["192.0.2.7"]
        assert 899.0 < late.pushed[0]["for"] <= 900.0
        late.link.close()
        chk = await w1.link.ask({"op": "check", "source": "192.0.2.8", "user": "X"})
        assert chk is not None and chk["blocked"]  # the user name, from another source
        assert shared.throttle_figures()[1] == {"sources": 1, "users": 1}
        # a bad message is logged and skipped: the link goes on
        w0.link.send({"op": "nonsense"})
        assert await w0.link.ask({"op": "check", "source": "s", "user": "u"}) is not None
        w0.link.close()
        w1.link.close()
        await settle()
        shared.close()

    asyncio.run(go())


def test_a_dead_worker_releases_its_sessions_and_its_stops_are_sent() -> None:
    async def go() -> list[radius.RadiusPacket]:
        peer, port = await start_peer(accept())
        shared = SharedLimits(
            config(
                f"[[radius.accounting_server]]\naddress = '127.0.0.1'\nport = {port}\n"
                f"secret = '{SECRET.decode()}'\n"
            )
        )
        w0, w1 = await attach(shared, 0), await attach(shared, 1)
        await w1.link.ask({"op": "login", "id": 2, "user": "alice", "source": "198.51.100.2"})
        w1.link.send(
            {
                "op": "opened",
                "id": 2,
                "acct": "6553f00d-00000002",
                "address": "10.77.0.130",
                "classes": [b"cls-a".hex()],
            }
        )
        w1.link.send(
            {"op": "opened6", "id": 2, "prefix": "2001:db8:77:85::/64", "iid": "1c2d3e4f50617283"}
        )
        await w1.link.ask({"op": "login", "id": 4, "user": "bob", "source": "s"})  # not opened
        await w0.link.ask({"op": "login", "id": 1, "user": "carol", "source": "s"})
        await settle()
        w1.link.send(
            {"op": "traffic", "id": 2, "rx_bytes": 600, "tx_bytes": 700, "rx_packets": 5,
             "tx_packets": 6}
        )  # fmt: skip
        await settle()
        assert shared.registry.sessions[2].tx_bytes == 700  # an Interim-Update's figures
        shared.traffic([SessionTraffic(2, 1000, 2000, 10, 6)])  # a traffic answer's rows
        w1.link.close()  # what the kernel does when the process dies
        for _ in range(100):
            await asyncio.sleep(0.01)
            if peer.seen and not shared.tasks:
                break
        assert set(shared.registry.sessions) == {1}  # alice's and bob's counts released
        assert shared.registry.count("alice") == 0
        assert shared.stops_sent == 1
        w0.link.close()
        shared.close()
        return peer.seen

    (stop,) = asyncio.run(go())
    assert stop.get_int(Attr.ACCT_STATUS_TYPE) == 2  # Stop
    assert stop.get_str(Attr.ACCT_SESSION_ID) == "6553f00d-00000002"
    assert stop.get_str(Attr.USER_NAME) == "alice"
    assert stop.get_int(Attr.ACCT_TERMINATE_CAUSE) == radius.TERMINATE_NAS_ERROR
    assert stop.get_ipv4(Attr.FRAMED_IP_ADDRESS) == IPv4Address("10.77.0.130")
    assert stop.get_int(Attr.ACCT_INPUT_OCTETS) == 1000
    assert stop.get_int(Attr.ACCT_OUTPUT_OCTETS) == 2000
    assert stop.get(Attr.CLASS) == b"cls-a"
    assert stop.get_int(Attr.ACCT_SESSION_TIME) == 0
    value = stop.get(Attr.FRAMED_IPV6_PREFIX)  # the /64 it had, though its worker is gone
    assert value is not None
    assert radius.decode_ipv6_prefix(value) == IPv6Network("2001:db8:77:85::/64")
    assert stop.get(Attr.FRAMED_INTERFACE_ID) == bytes.fromhex("1c2d3e4f50617283")


def test_retired_counters_keep_the_totals() -> None:
    async def go() -> None:
        shared = SharedLimits(config())
        last = StatsRecord.from_json(
            _stats_answer(
                sessions=3,
                pool_in_use=3,
                rx_bytes=500,
                handshakes={"opened": 4, "refused": 1},
                auth_blocked={"sources": 1, "users": 0},
                handshake_latency={"buckets": [[0.1, 1], ["+Inf", 4]], "sum": 0.5, "count": 4},
                tun_offload=True,
                internal_errors=2,
                open_files_limit=1024,
            )
        )
        counted = Counted.of(last)
        # counters only: no gauge (sessions, pool_in_use, open_files_limit, auth_blocked)
        assert {k for k, v in counted.values.items() if v} == {"rx_bytes", "internal_errors"}
        assert not {"sessions", "pool_in_use", "open_files_limit"} & set(counted.values)
        shared.retire(last)
        shared.retire(None)  # a worker that died before anyone asked for stats
        shared.retire(last)
        r = shared.retired
        assert r.values["rx_bytes"] == 1000 and r.values["internal_errors"] == 4
        assert r.handshakes == {"opened": 8, "refused": 2}
        assert r.latency is not None
        assert r.latency.to_json() == {
            "buckets": [[0.1, 2], ["+Inf", 8]],
            "sum": 1.0,
            "count": 8,
        }
        assert last.handshakes == {"opened": 4, "refused": 1}  # not changed under it
        shared.close()

    asyncio.run(go())


def test_every_int_field_of_stats_is_a_counter_or_a_gauge() -> None:
    """A new ``stats`` field is summed by the supervisor's merge as one or the other."""
    from sstpd.aio import shared

    for cls, counters, gauges in [
        (StatsRecord, shared.COUNTERS, shared.GAUGES | shared.OWN),
        (AdmissionRecord, shared.ADMISSION_COUNTERS, shared.ADMISSION_GAUGES),
    ]:
        ints = {f.name for f in fields(cls) if f.type in ("int", int)}
        assert set(counters) | gauges == ints, cls
        assert not set(counters) & gauges
    assert {"rx_bytes", "reloads", "acme_renewals"} <= set(shared.COUNTERS)
    assert shared.ADMISSION_COUNTERS == ("auth_delayed", "accept_errors", "internal_errors")


def _stats_answer(**kw: Any) -> dict[str, Any]:
    """A worker's ``stats`` answer: zeros, and ``kw``."""
    base: dict[str, Any] = {"ok": True, "status": "ok", "accepting": True}
    for f in fields(StatsRecord) + fields(AdmissionRecord):
        if f.type in ("int", int):
            base[f.name] = 0
    base |= {
        "started_at": 1.0,
        "uptime": 1.0,
        "handshakes": {},
        "auth_blocked": {},
        "handshake_latency": {"buckets": [["+Inf", 0]], "sum": 0, "count": 0},
    }
    return base | kw


def test_a_long_message_does_not_end_the_link() -> None:
    """Eight RADIUS Class attributes of 253 bytes, hex: beyond a control request's 4 KB."""

    async def go() -> None:
        shared = SharedLimits(config())
        w = await attach(shared, 0)
        await w.link.ask({"op": "login", "id": 1, "user": "alice", "source": "s"})
        classes = [bytes([i]) * 253 for i in range(8)]
        w.link.send(
            {"op": "opened", "id": 1, "acct": "a-1", "address": "10.77.0.2",
             "classes": [c.hex() for c in classes]}
        )  # fmt: skip
        answer = await w.link.ask({"op": "check", "source": "s", "user": "alice"})
        assert answer is not None and answer["blocked"] is False  # the link still works
        assert shared.registry.sessions[1].classes == tuple(classes)
        w.link.close()
        await settle()
        shared.close()

    asyncio.run(go())


def test_no_answer_in_time_or_a_lost_link_is_none(monkeypatch: Any) -> None:
    """What the worker then does is refuse the login (fail closed, ``aio.server``)."""
    monkeypatch.setattr(workers_link, "REGISTRY_TIMEOUT", 0.2)

    async def go() -> None:
        silent, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        link = RegistryLink(mine.detach(), lambda _msg: None)
        await link.start()
        t0 = asyncio.get_running_loop().time()
        assert await link.ask({"op": "check", "source": "s", "user": "u"}) is None
        assert asyncio.get_running_loop().time() - t0 >= 0.2
        assert silent.recv(4096).startswith(b'{"op":"check"')  # it was asked
        waiting = asyncio.ensure_future(link.ask({"op": "check", "source": "s", "user": "u"}))
        await asyncio.sleep(0.05)
        silent.close()  # the supervisor is gone
        assert await waiting is None
        link.close()

    asyncio.run(go())
