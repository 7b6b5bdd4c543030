"""The real-client harness's readiness check (tests/realclient/sstpc.py), on the output of
``ip -j -4 addr show dev ppp0`` at each step of pppd's ipcp_up(): the harness must not
read ppp0's addresses before pppd has set both and brought the device up."""

from __future__ import annotations

import json

from tests.realclient.sstpc import GUEST_CONNECT, ppp_ready


def _ip_json(flags: list[str], addr: dict[str, object] | None) -> str:
    link = {"ifindex": 5, "ifname": "ppp0", "flags": flags, "mtu": 1400, "addr_info": []}
    if addr is not None:
        link["addr_info"] = [{"family": "inet", "prefixlen": 32, "scope": "global", **addr}]
    return json.dumps([link])


DOWN = ["POINTOPOINT", "MULTICAST", "NOARP"]
UP = [*DOWN, "UP", "LOWER_UP"]


def test_not_ready_while_pppd_configures_ppp0() -> None:
    assert ppp_ready("") is None  # no ppp0 yet: ip prints nothing (or an error)
    assert ppp_ready("[]") is None
    assert ppp_ready(_ip_json(DOWN, None)) is None  # unit created, no address
    # SIOCSIFADDR done, SIOCSIFDSTADDR not yet: ip shows "local" without "address"
    assert ppp_ready(_ip_json(DOWN, {"local": "10.78.0.2"})) is None
    assert ppp_ready(_ip_json(UP, {"local": "10.78.0.2"})) is None  # (+ipv6 brought it up)
    # both addresses, sifup() not yet
    assert ppp_ready(_ip_json(DOWN, {"local": "10.78.0.2", "address": "10.78.0.1"})) is None


def test_ready_with_both_addresses_and_up() -> None:
    got = ppp_ready(_ip_json(UP, {"local": "10.78.0.2", "address": "10.78.0.1"}))
    assert got == ("10.78.0.2", "10.78.0.1")


def test_the_guest_script_carries_the_same_check() -> None:
    assert "def ppp_ready(ip_json: str)" in GUEST_CONNECT
    assert "@@" not in GUEST_CONNECT
    compile(GUEST_CONNECT, "GUEST_CONNECT", "exec")
