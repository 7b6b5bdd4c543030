"""Framed-IPv6-Prefix from a real FreeRADIUS 3.2, with server.workers = 2 and an IPv6 pool.

Topology as in ``test_workers_ipv6`` (client and server namespaces, an IPv6-only host
behind the server); FreeRADIUS runs in the server namespace (once for the module, its
own raddb, ``freeradius.py``) and answers some users with a Framed-IPv6-Prefix. The
assertions are about what an admin sees: the session gets exactly that /64, the kernel
routes it to the TUN of the worker holding the session (the host behind the server
reaches it), the accounting records FreeRADIUS writes carry it, a prefix the server cannot
give (outside ``tunnel.ipv6_pool``, not a /64, held by another session) leaves the
session IPv4 only with a log line saying why, and the /64's route goes with the session.
The supervisor listens for Disconnect-Requests: radclient naming a session by its
Framed-IPv6-Prefix ends exactly the session holding that /64, whichever worker has it;
naming it by its Framed-Interface-Id (the value FreeRADIUS stored from accounting, the
client's own IPV6CP identifier) ends exactly the session with that identifier. An
IPv6-only session that opens IPCP later is accounted at once (an Interim-Update with its
Framed-IP-Address), not at the next ``interim_interval``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from ipaddress import IPv6Network
from typing import Any

import pytest

from sstpd import control
from tests.integration.freeradius import SECRET, FreeRadius, RadUser, serving
from tests.integration.ipv6_held import Held
from tests.integration.netns import SERVER_IP, Daemon, Netns, wait_for, with_ipv6_host
from tests.integration.test_workers_ipv6 import DAE_PORT, DAE_SECRET, radclient

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

POOL6 = IPv6Network("2001:db8:77::/56")
TUNS = ("sstp0", "sstp0w1")
SERVER6 = "2001:db8:77::1"
LAN_SERVER6, LAN_HOST6 = "2001:db8:ff::1", "2001:db8:ff::2"
FRAMED6 = IPv6Network("2001:db8:77:85::/64")  # in worker 1's run, wherever the session lands
USERS6 = [
    RadUser("v6user", "v6user-pass", {"Framed-IPv6-Prefix": str(FRAMED6)}),
    RadUser("v6out", "v6out-pass", {"Framed-IPv6-Prefix": "2001:db8:99:1::/64"}),
    RadUser("v6wide", "v6wide-pass", {"Framed-IPv6-Prefix": "2001:db8:77:40::/60"}),
    RadUser("v6none", "v6none-pass"),
    RadUser("v6pd", "v6pd-pass", {"Delegated-IPv6-Prefix": "2001:db8:900::/56"}),
]


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with with_ipv6_host("sstpr6", LAN_SERVER6, LAN_HOST6) as n:
        yield n


@pytest.fixture(scope="module")
def freeradius(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    fr = FreeRadius(tmp_path_factory.mktemp("raddb6"), SERVER_IP, users=list(USERS6))
    with serving(fr, net, net.srv) as running:
        yield running


@pytest.fixture(scope="module")
def daemon(
    net: Netns, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("radius6"),
        workers=2,
        tunnel_config=f'ipv6_pool = "{POOL6}"',
        extra_config=(
            "\n[radius]\ntimeout = 2.0\nretries = 1\ninterim_interval = 2\n"
            f'dae_listen = "{SERVER_IP}:{DAE_PORT}"\n\n'
            f'[[radius.dae_client]]\naddress = "{SERVER_IP}"\nsecret = "{DAE_SECRET}"\n\n'
            f'[[radius.server]]\naddress = "{SERVER_IP}"\nsecret = "{SECRET}"\n\n'
            f'[[radius.accounting_server]]\naddress = "{SERVER_IP}"\nsecret = "{SECRET}"\n'
        ),
    )
    try:
        d.prepare()
        d.config.write_text(
            d.config.read_text().replace(
                '[auth]\nusers_file = "users"',
                '[auth]\nusers_file = "users"\nbackends = ["radius"]',
            )
        )
        d.start()
        yield d
    finally:
        d.stop()


def routes_of(net: Netns, prefix: IPv6Network) -> list[str]:
    """The devices the server namespace routes exactly ``prefix`` to."""
    out = net.run(net.srv, "ip", "-6", "-j", "route", "show", "exact", str(prefix)).stdout
    return [r.get("dev", "") for r in json.loads(out or "[]")]


def exhaust6(net: Netns, d: Daemon, user: str) -> dict[str, Any]:
    """One session of ``user``: did it get IPv6, does IPv4 work, where IPV6CP ended."""
    r = net.run(
        net.cli,
        *(sys.executable, "-m", "tests.integration.ipv6_tool", "exhaust6", *d.client_args()),
        *("--user", user, "--password", f"{user}-pass", "--sessions", "1"),
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_accepts_prefix_is_the_sessions_and_goes_with_it(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    before = daemon.stats()["pool6_in_use"]
    held = Held(
        net, daemon, "ping6", "--user", "v6user", "--password", "v6user-pass", "--count", "2"
    )
    try:
        first = held.first
        assert IPv6Network(first["prefix"]) == FRAMED6
        # through the tunnel to the server and to the host behind it: the host's replies
        # come back only if the kernel routes the /64 to the TUN of the session's worker
        assert first["server6_replies"] == 2 and first["host6_replies"] == 2
        assert first["v4_replies"] == 1
        [dev] = routes_of(net, FRAMED6)  # exactly one route: one holder across the workers
        assert dev in TUNS
        # a second session of the same user while the first holds the /64: IPv6 refused,
        # IPv4 up (never another /64 in its place)
        again = exhaust6(net, daemon, "v6user")
        assert again["opened"] == 1 and again["ipv6"] == 0 and again["v4_replies"] == 1
        assert again["ipv6cp"] == ["STOPPED"]  # Protocol-Rejected
        assert routes_of(net, FRAMED6) == [dev]  # the holder keeps its route
        # the Interim-Update while it is open carries the prefix and the interface id
        interim = wait_for(
            "an Interim-Update with the prefix",
            lambda: [
                r
                for r in freeradius.records_of("v6user")
                if r.get("Acct-Status-Type") == "Interim-Update"
                and r.get("Framed-IPv6-Prefix") == str(FRAMED6)
            ],
        )
        assert interim[0].get("Framed-Interface-Id"), interim[0]
        result = held.finish()
        assert result["prefix"] == str(FRAMED6)
    finally:
        held.kill()
    stops = wait_for(
        "both sessions' Stops",
        lambda: (
            len(
                s := [
                    r
                    for r in freeradius.records_of("v6user")
                    if r.get("Acct-Status-Type") == "Stop"
                ]
            )
            == 2
            and s
        ),
    )
    with_prefix = [r for r in stops if r.get("Framed-IPv6-Prefix") == str(FRAMED6)]
    assert len(with_prefix) == 1, stops  # the holder's; the refused one had no IPv6
    assert with_prefix[0].get("Framed-Interface-Id"), with_prefix[0]
    assert int(with_prefix[0]["Acct-Session-Time"]) >= 2
    # the /64's route and the pool's count go with the session
    wait_for("the route to go", lambda: routes_of(net, FRAMED6) == [])
    wait_for("the pool back to baseline", lambda: daemon.stats()["pool6_in_use"] == before)


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("v6out", "2001:db8:99:1::/64 is outside tunnel.ipv6_pool 2001:db8:77::/56"),
        ("v6wide", "2001:db8:77:40::/60 is not a /64"),
    ],
)
def test_a_prefix_the_server_cannot_give_leaves_the_session_ipv4_only(
    net: Netns, daemon: Daemon, freeradius: FreeRadius, user: str, why: str
) -> None:
    before = daemon.stats()["pool6_in_use"]
    res = exhaust6(net, daemon, user)
    assert res == {"opened": 1, "ipv6": 0, "v4_replies": 1, "ipv6cp": ["STOPPED"]}
    daemon.wait_log(f"Framed-IPv6-Prefix for {user!r}: {why}; IPv6 refused, IPv4 only")
    assert routes_of(net, IPv6Network("2001:db8:99:1::/64")) == []
    assert daemon.stats()["pool6_in_use"] == before  # nothing taken in its place
    stop = wait_for(
        "the Stop",
        lambda: [r for r in freeradius.records_of(user) if r.get("Acct-Status-Type") == "Stop"],
    )
    assert "Framed-IPv6-Prefix" not in stop[0]


def test_without_the_attribute_a_dynamic_64_of_the_pool(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    held = Held(
        net, daemon, "ping6", "--user", "v6none", "--password", "v6none-pass", "--count", "1"
    )
    try:
        prefix = IPv6Network(held.first["prefix"])
        assert prefix.subnet_of(POOL6) and prefix != FRAMED6
        assert held.first["host6_replies"] == 1
        # RADIUS is a backend: each worker claims its dynamic /64s with their own route
        assert len(routes_of(net, prefix)) == 1
        held.finish()
    finally:
        held.kill()
    stop = wait_for(
        "the Stop",
        lambda: [r for r in freeradius.records_of("v6none") if r.get("Acct-Status-Type") == "Stop"],
    )
    assert stop[0].get("Framed-IPv6-Prefix") == str(prefix)
    wait_for("the route to go", lambda: routes_of(net, prefix) == [])


def test_a_delegated_prefix_is_ignored_with_one_warning(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """FreeRADIUS answers with Delegated-IPv6-Prefix, which sstpd does not support (no
    DHCPv6 prefix delegation): the login and the session's own /64 from the pool are not
    affected, the log says once that the attribute was ignored, and nothing is routed to
    the delegated prefix."""
    res = exhaust6(net, daemon, "v6pd")
    assert res["opened"] == 1 and res["ipv6"] == 1 and res["v4_replies"] == 1, res
    text = daemon.wait_log(
        "RADIUS Access-Accept: Delegated-IPv6-Prefix (123) 2001:db8:900::/56 ignored: "
        "not supported, sstpd does no DHCPv6 prefix delegation"
    )
    assert text.count("Delegated-IPv6-Prefix (123)") == 1  # one session, one warning
    assert SECRET not in text
    assert routes_of(net, IPv6Network("2001:db8:900::/56")) == []


def login(user: str) -> tuple[str, ...]:
    return ("--user", user, "--password", f"{user}-pass")


def _sessions(d: Daemon) -> list[dict[str, Any]]:
    return control.call(str(d.workdir / "control.sock"), "sessions")["sessions"]  # type: ignore[no-any-return]


def test_disconnect_request_by_framed_ipv6_prefix_ends_only_that_session(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """radclient (FreeRADIUS) to the supervisor's DAE port with Framed-IPv6-Prefix: the
    session holding exactly that /64 ends (Admin-Reset, its route goes), the other one,
    which the host behind the server still reaches, is untouched; another length, another
    /64, or a User-Name that does not hold the /64 end nothing (NAK 503)."""
    v6user = Held(net, daemon, "many6", "--sessions", "1", *login("v6user"))
    other = Held(net, daemon, "many6", "--sessions", "1", *login("v6none"))
    try:
        for h in (v6user, other):
            assert h.first["open"] == 1, h.first
        rows = {r["user"]: r for r in _sessions(daemon)}
        assert set(rows) == {"v6user", "v6none"}, rows
        assert IPv6Network(rows["v6user"]["ipv6_prefix"]) == FRAMED6
        other6 = IPv6Network(rows["v6none"]["ipv6_prefix"])
        assert other6 != FRAMED6 and other6.subnet_of(POOL6)
        [other_addr] = other.first["addresses"]

        # names no session: the pool's /56 (holding both /64s), a free /64, the /64
        # together with a user who does not hold it
        for attrs in (
            f"Framed-IPv6-Prefix = {POOL6}",
            "Framed-IPv6-Prefix = 2001:db8:77:86::/64",
            f"User-Name = v6none, Framed-IPv6-Prefix = {FRAMED6}",
        ):
            out = radclient(net, attrs)
            assert "Disconnect-NAK" in out and "Session-Context-Not-Found" in out, (attrs, out)
        assert len(_sessions(daemon)) == 2

        out = radclient(net, f"Framed-IPv6-Prefix = {FRAMED6}")
        assert "Received Disconnect-ACK" in out, out
        daemon.wait_log(f"ipv6-prefix={FRAMED6}: 1 sessions ended")
        daemon.wait_log("user 'v6user' disconnected by RADIUS")
        wait_for(
            "the /64's holder to end",
            lambda: [r["user"] for r in _sessions(daemon)] == ["v6none"],
        )
        wait_for("its route to go", lambda: routes_of(net, FRAMED6) == [])
        stop = wait_for(
            "the Admin-Reset Stop with the prefix",
            lambda: [
                r
                for r in freeradius.records_of("v6user")
                if r.get("Acct-Status-Type") == "Stop"
                and r.get("Acct-Terminate-Cause") == "Admin-Reset"
                and r.get("Framed-IPv6-Prefix") == str(FRAMED6)
            ],
        )
        assert stop

        # the other session: still listed with its /64, routed, reached from behind
        [row] = _sessions(daemon)
        assert IPv6Network(row["ipv6_prefix"]) == other6 and len(routes_of(net, other6)) == 1
        host = net.host  # type: ignore[attr-defined]
        r = net.run(host, "ping", "-6", "-c", "1", "-W", "3", other_addr, check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)

        # with User-Name as well: both must match, and then it ends
        out = radclient(net, f"User-Name = v6none, Framed-IPv6-Prefix = {other6}")
        assert "Received Disconnect-ACK" in out, out
        wait_for("the other session to end", lambda: _sessions(daemon) == [])
        wait_for("its route to go", lambda: routes_of(net, other6) == [])
    finally:
        v6user.kill()
        other.kill()


def test_ipv4_opened_after_an_ipv6_only_start_reaches_accounting(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """An IPv6-only session (IPCP rejected) that opens IPCP later: its Start carried no
    Framed-IP-Address; the Interim-Updates and the Stop after IPCP carry it. (That the
    first of them is sent at once, not at the next ``interim_interval``, is pinned by
    ``test_ipcp_opened_later_is_accounted_at_once``, with the interval at an hour.)"""
    n0 = len(freeradius.records_of("v6none"))  # earlier tests' sessions are all stopped

    def mine(kind: str, address: str) -> list[dict[str, str]]:
        return [
            r
            for r in freeradius.records_of("v6none")[n0:]
            if r.get("Acct-Status-Type") == kind and r.get("Framed-IP-Address") == address
        ]

    held = Held(net, daemon, "v6then4", *login("v6none"), "--count", "1")
    try:
        address = held.first["address"]
        assert held.first["v4_replies"] == 1
        starts = [
            r for r in freeradius.records_of("v6none")[n0:] if r.get("Acct-Status-Type") == "Start"
        ]
        assert starts and "Framed-IP-Address" not in starts[0], starts
        interim = wait_for(
            "the Interim-Update with the address", lambda: mine("Interim-Update", address)
        )
        assert interim[0].get("Framed-IPv6-Prefix") == held.first["prefix"]
        held.finish()
    finally:
        held.kill()
    wait_for("the Stop with the address", lambda: mine("Stop", address))


def ifid(hex_iid: str) -> str:
    """An interface identifier as FreeRADIUS reads and writes Framed-Interface-Id
    (``ifid_ntoa``: four 16-bit groups in hex without leading zeros)."""
    raw = bytes.fromhex(hex_iid)
    return ":".join(f"{int.from_bytes(raw[i : i + 2], 'big'):x}" for i in range(0, 8, 2))


def test_disconnect_request_by_framed_interface_id_ends_only_that_session(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """Two IPv6 sessions (on whichever workers). The Framed-Interface-Id FreeRADIUS stored
    from each one's Interim-Update is the client's own IPV6CP identifier; radclient to the
    supervisor naming one session's ends exactly that session (Admin-Reset, the Stop
    carries the same id); an identifier no session has, or one together with a User-Name
    that does not have it, ends nothing (NAK 503); a value that is not 8 bytes is NAK 407
    (Invalid-Attribute-Value) and ends nothing, even beside a User-Name that would match."""
    n0 = {u: len(freeradius.records_of(u)) for u in ("v6user", "v6none")}
    v6user = Held(net, daemon, "many6", "--sessions", "1", *login("v6user"))
    other = Held(net, daemon, "many6", "--sessions", "1", *login("v6none"))
    try:
        [iid_v6user] = v6user.first["iids"]
        [iid_other] = other.first["iids"]
        assert iid_v6user != iid_other  # each worker keeps its own unique; these differ
        [other_addr] = other.first["addresses"]

        def reported(user: str) -> str:
            """The Framed-Interface-Id of ``user``'s first Interim-Update (interval 2 s)."""
            interim = wait_for(
                f"an Interim-Update of {user} with Framed-Interface-Id",
                lambda: [
                    r
                    for r in freeradius.records_of(user)[n0[user] :]
                    if r.get("Acct-Status-Type") == "Interim-Update"
                    and r.get("Framed-Interface-Id")
                ],
            )
            return interim[0]["Framed-Interface-Id"]

        # accounting reports the identifier the client negotiated: the same value a
        # Disconnect-Request names the session by
        assert reported("v6user") == ifid(iid_v6user)
        assert reported("v6none") == ifid(iid_other)

        unused = "0000000000000001"
        assert unused not in (iid_v6user, iid_other)
        for attrs in (
            f"Framed-Interface-Id = {ifid(unused)}",
            f"User-Name = v6none, Framed-Interface-Id = {ifid(iid_v6user)}",
        ):
            out = radclient(net, attrs)
            assert "Disconnect-NAK" in out and "Session-Context-Not-Found" in out, (attrs, out)
        # 7 bytes, sent raw (radclient refuses a malformed value of the named attribute)
        out = radclient(net, f"User-Name = v6user, Attr-96 = 0x{iid_v6user[:14]}")
        assert "Disconnect-NAK" in out and "Invalid-Attribute-Value" in out, out
        daemon.wait_log(f"malformed Framed-Interface-Id {iid_v6user[:14]}: NAK")
        assert sorted(r["user"] for r in _sessions(daemon)) == ["v6none", "v6user"]

        out = radclient(net, f"Framed-Interface-Id = {ifid(iid_v6user)}")
        assert "Received Disconnect-ACK" in out, out
        daemon.wait_log(f"interface-id={ifid(iid_v6user)}: 1 sessions ended")
        wait_for(
            "the session with that identifier to end",
            lambda: [r["user"] for r in _sessions(daemon)] == ["v6none"],
        )
        stop = wait_for(
            "the Admin-Reset Stop with the identifier",
            lambda: [
                r
                for r in freeradius.records_of("v6user")[n0["v6user"] :]
                if r.get("Acct-Status-Type") == "Stop"
                and r.get("Acct-Terminate-Cause") == "Admin-Reset"
                and r.get("Framed-Interface-Id") == ifid(iid_v6user)
            ],
        )
        assert stop
        wait_for("its route to go", lambda: routes_of(net, FRAMED6) == [])

        # the other session is untouched: listed, and reached from the host behind
        host = net.host  # type: ignore[attr-defined]
        r = net.run(host, "ping", "-6", "-c", "1", "-W", "3", other_addr, check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        out = radclient(net, f"User-Name = v6none, Framed-Interface-Id = {ifid(iid_other)}")
        assert "Received Disconnect-ACK" in out, out
        wait_for("the other session to end", lambda: _sessions(daemon) == [])
    finally:
        v6user.kill()
        other.kill()


def set_interim_interval(d: Daemon, seconds: int) -> None:
    """Reload the running daemon with ``radius.interim_interval = seconds`` (for sessions
    that open from now on; both workers reload)."""
    text = re.sub(r"interim_interval = \d+", f"interim_interval = {seconds}", d.config.read_text())
    d.config.write_text(text)
    answer = control.call(str(d.workdir / "control.sock"), "reload")
    assert answer["ok"] and answer["workers"] == 2, answer
    assert "radius.interim_interval" in answer["changed"], answer


def test_ipcp_opened_later_is_accounted_at_once(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """``interim_interval`` an hour: the periodic Interim-Updates cannot show up during the
    test. An IPv6-only session that opens IPCP after 2 s gets an Interim-Update carrying
    its new Framed-IP-Address in FreeRADIUS's detail file within seconds of the IPCP
    open, while the session is still up (``Aaa.address_added`` on ``Session4Opened``),
    and it is the session's only one: without that immediate update the address would
    reach RADIUS only with the Stop."""
    set_interim_interval(daemon, 3600)
    try:
        n0 = len(freeradius.records_of("v6none"))
        held = Held(net, daemon, "v6then4", *login("v6none"), "--count", "1", "--v4-after", "2")
        try:
            address = held.first["address"]  # IPCP is open (and an echo answered)
            [start] = [
                r
                for r in freeradius.records_of("v6none")[n0:]
                if r.get("Acct-Status-Type") == "Start"
            ]
            assert "Framed-IP-Address" not in start, start
            sid = start["Acct-Session-Id"]

            def interims() -> list[dict[str, str]]:
                return [
                    r
                    for r in freeradius.records_of("v6none")[n0:]
                    if r.get("Acct-Session-Id") == sid
                    and r.get("Acct-Status-Type") == "Interim-Update"
                ]

            [interim] = wait_for("the Interim-Update sent when IPCP opened", interims, 15.0)
            assert interim.get("Framed-IP-Address") == address, interim
            assert interim.get("Framed-IPv6-Prefix") == held.first["prefix"], interim
            assert int(interim["Acct-Session-Time"]) < 60, interim  # not the hourly one
            held.finish()
        finally:
            held.kill()
        stop = wait_for(
            "the Stop",
            lambda: [
                r
                for r in freeradius.records_of("v6none")[n0:]
                if r.get("Acct-Session-Id") == sid and r.get("Acct-Status-Type") == "Stop"
            ],
        )
        assert stop[0].get("Framed-IP-Address") == address
        assert len(interims()) == 1  # no periodic one: the hour's interval was in force
    finally:
        set_interim_interval(daemon, 2)
