"""Issue 12 in the session glue, in memory: the server answers the DHCPINFORM (the
docs/protocol/ipv6-dhcp.md §10 vector) before anything reaches the I/O layer and drops every other
DHCP packet, counted; the client sends its DHCPINFORM and reads the ACK, and negotiates
IPV6CP, solicits and reads the Router Advertisement."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from sstpd.proto import dhcp
from sstpd.proto.ipv6.autoconf import address_in
from sstpd.proto.mschap import nt_password_hash
from sstpd.proto.ppp.link import PppClientConfig, PppServerConfig
from sstpd.proto.session import (
    ClientSession,
    IpReceived,
    Ipv6Configured,
    Ipv6Settings,
    Notice,
    RoutesReceived,
    ServerSession,
    SessionClosed,
)
from sstpd.proto.sstp.constants import HashProtocol
from tests.integration.client_tool import udp
from tests.unit.test_dhcp import ACK_OPTIONS_VECTOR, inform, inform_packet

SERVER = IPv4Address("10.8.0.1")
CLIENT = IPv4Address("10.8.0.5")
HASHES = {HashProtocol.SHA256: b"\x11" * 32}
PUSHED = dhcp.InformSettings(
    domain="corp.example",
    routes=(IPv4Network("10.17.0.0/16"), IPv4Network("192.168.50.0/24")),
)


def _random() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: bytes((next(counter) + i) % 256 for i in range(n))


class Pair:
    def __init__(self, *, ipv6: bool = False, settings: dhcp.InformSettings = PUSHED) -> None:
        rnd = _random()
        self.server = ServerSession(
            ppp_config=PppServerConfig(local_address=SERVER, dns=(SERVER,)),
            cert_hashes=HASHES,
            hash_protocols=3,
            lookup=lambda n: nt_password_hash("pw"),
            assign_address=lambda n: CLIENT,
            random=rnd,
            now=0.0,
            dhcp_settings=settings,
        )
        self.client = ClientSession(
            host="vpn",
            random=rnd,
            now=0.0,
            ppp_config=PppClientConfig(
                username="alice", password="pw", auth_methods=("mschapv2",), ipv6=ipv6
            ),
            cert_hashes=HASHES,
        )
        self.server_events: list[object] = []
        self.client_events: list[object] = []
        self.client.start(0.0)

    def run(self, now: float = 0.0) -> None:
        for _ in range(30):
            moved = False
            if data := self.client.data_to_send():
                self.server.receive_data(data, now)
                moved = True
            if data := self.server.data_to_send():
                self.client.receive_data(data, now)
                moved = True
            self.server_events += self.server.pop_events()
            self.client_events += self.client.pop_events()
            if not moved:
                return

    def server_ip(self) -> list[bytes]:
        return [e.packet for e in self.server_events if isinstance(e, IpReceived)]

    def client_ip(self) -> list[bytes]:
        return [e.packet for e in self.client_events if isinstance(e, IpReceived)]


def opened(**kw: object) -> Pair:
    p = Pair(**kw)  # type: ignore[arg-type]
    p.run()
    assert p.server.is_open and p.client.is_open and p.client.local_address == CLIENT
    return p


# ---------------------------------------------------------------- server: DHCPINFORM


def test_windows_inform_is_answered_with_the_checked_vector_and_not_handed_on() -> None:
    p = opened()
    p.client.send_ip(inform_packet(inform(options={53: b"\x08"})))
    p.run()
    assert p.server_ip() == []  # never to the I/O layer (the TUN)
    assert p.server.counters.dhcp_answered == 1 and p.server.counters.dropped_dhcp == 0
    (ack,) = p.client_ip()  # no INFORM pending on the client: it arrives as a packet
    assert ack[28 + 240 :] == ACK_OPTIONS_VECTOR
    assert ack[12:16] == SERVER.packed and ack[16:20] == CLIENT.packed


def test_dns_defaults_to_the_ipcp_servers() -> None:
    p = opened(settings=dhcp.InformSettings())
    assert p.client.send_inform(0.0)
    p.run()
    (routes,) = [e for e in p.client_events if isinstance(e, RoutesReceived)]
    assert routes.info == dhcp.AckInfo(server=SERVER, routes=(), domain="", dns=(SERVER,))


BAD = {
    "foreign-ciaddr": inform_packet(inform(ciaddr=IPv4Address("10.8.0.6"))),
    "zero-ciaddr": inform_packet(inform(ciaddr=IPv4Address(0))),
    "discover": inform_packet(inform(options={53: b"\x01"})),
    "truncated": inform_packet()[:100],
    "bad-udp-checksum": inform_packet()[:-1] + b"\x01",
    "oversized": inform_packet(pad_to=dhcp.MAX_MESSAGE + 1),
    "sport-67": inform_packet(ports=(67, 67)),
}


@pytest.mark.parametrize("raw", BAD.values(), ids=BAD.keys())
def test_bad_dhcp_is_dropped_counted_and_the_session_lives(raw: bytes) -> None:
    p = opened()
    p.client.send_ip(raw)
    p.run()
    assert p.server.counters.dropped_dhcp == 1 and p.server.counters.dhcp_answered == 0
    assert p.server_ip() == [] and p.client_ip() == []
    assert p.server.is_open and not any(isinstance(e, SessionClosed) for e in p.server_events)
    # and the next, good one is answered
    p.client.send_ip(inform_packet())
    p.run()
    assert p.server.counters.dhcp_answered == 1 and len(p.client_ip()) == 1


def test_a_flood_of_bad_dhcp_is_counted_and_logged_three_times() -> None:
    p = opened()
    for _ in range(50):
        p.client.send_ip(BAD["foreign-ciaddr"])
    p.run()
    assert p.server.counters.dropped_dhcp == 50
    drops = [e for e in p.server_events if isinstance(e, Notice) and "DHCP" in e.message]
    assert len(drops) == 3 and "ciaddr 10.8.0.6" in drops[0].message


def test_dhcp_from_a_foreign_source_is_spoofed_not_dhcp() -> None:
    p = opened()
    p.client.send_ip(inform_packet(src=IPv4Address("10.8.0.9")))
    p.run()
    assert p.server.counters.dropped_spoofed == 1 and p.server.counters.dropped_dhcp == 0


def test_other_udp_still_passes() -> None:
    p = opened()
    p.client.send_ip(udp(CLIENT, SERVER, 68, 53, b"dns"))
    p.client.send_ip(udp(CLIENT, SERVER, 5000, 6700, b"x"))
    p.run()
    assert len(p.server_ip()) == 2 and p.server.counters.dropped_dhcp == 0


# ---------------------------------------------------------------- client: --accept-routes


def test_client_inform_gets_the_pushed_routes_domain_and_dns() -> None:
    p = opened()
    assert p.client.send_inform(0.0)
    p.run()
    (ev,) = [e for e in p.client_events if isinstance(e, RoutesReceived)]
    assert [n for n, _ in ev.info.routes] == list(PUSHED.routes)
    assert {r for _, r in ev.info.routes} == {SERVER}
    assert ev.info.domain == "corp.example" and ev.info.dns == (SERVER,)
    assert p.client_ip() == []  # the ACK is consumed, not handed to the TUN


def test_client_drops_an_answer_for_another_transaction_and_keeps_waiting() -> None:
    p = opened()
    assert p.client.send_inform(0.0)
    foreign = dhcp.build_ack(
        dhcp.BootpMessage(op=1, xid=0xDEAD, ciaddr=CLIENT), server=SERVER, routes=PUSHED.routes
    )
    p.client.receive_packet(False, b"\xff\x03\x00\x21" + foreign, 0.0)
    assert p.client.counters.dropped_dhcp == 1
    p.run()  # the server's real answer to the pending INFORM
    assert any(isinstance(e, RoutesReceived) for e in p.client_events)


def test_send_inform_needs_an_open_session() -> None:
    p = Pair()
    assert not p.client.send_inform(0.0)


# ---------------------------------------------------------------- client: IPv6


def test_client_ipv6cp_is_rejected_by_an_ipv4_only_server_and_ipv4_keeps_working() -> None:
    p = opened(ipv6=True)
    assert not p.client.link.is_network6_up
    assert p.client.ipv6 is None
    p.client.send_ip(udp(CLIENT, SERVER, 1, 2, b"v4"))
    p.run()
    assert len(p.server_ip()) == 1


PREFIX = IPv6Network("fd00:80:0:5::/64")
SERVER6 = IPv6Address("fd00:80::1")


def ipv6_pair() -> Pair:
    """Both ends doing IPv6: the server session with a prefix source, as the daemon has."""
    p = Pair(ipv6=True)
    rnd = _random()
    p.server = ServerSession(
        ppp_config=PppServerConfig(local_address=SERVER, dns=(SERVER,)),
        cert_hashes=HASHES,
        hash_protocols=3,
        lookup=lambda n: nt_password_hash("pw"),
        assign_address=lambda n: CLIENT,
        random=rnd,
        now=0.0,
        dhcp_settings=PUSHED,
        assign_prefix=lambda user: PREFIX,
        ipv6=Ipv6Settings(address=SERVER6, dns=(IPv6Address("fd00:80::53"),), mtu=1400),
    )
    return p


def test_client_negotiates_ipv6cp_and_configures_from_the_servers_ra() -> None:
    p = ipv6_pair()
    p.run()
    assert p.client.is_open and p.client.link.is_network6_up
    handler = p.client.link.ipv6cp_handler
    server_handler = p.server.link.ipv6cp_handler
    assert handler is not None and server_handler is not None
    # the server's unsolicited RA (and the answer to our RS) gave one configuration
    (ev,) = [e for e in p.client_events if isinstance(e, Ipv6Configured)]
    assert ev.config.prefix == PREFIX
    assert ev.config.address == address_in(PREFIX, handler.local_iid)
    assert ev.config.link_local == IPv6Address(b"\xfe\x80" + bytes(6) + handler.local_iid)
    assert ev.config.router == IPv6Address(b"\xfe\x80" + bytes(6) + server_handler.local_iid)
    assert ev.config.mtu == 1400 and ev.config.dns == (IPv6Address("fd00:80::53"),)
    assert p.client.ipv6 == ev.config
    assert p.client_ip() == [] and p.server_ip() == []  # RS/RA never reach a TUN
    # the unsolicited RA came in the same read as IPV6CP's Configure-Ack: no RS needed
    assert p.client._solicitor is not None and p.client._solicitor.sent == 0
    # IPv6 from our global address goes to the server's I/O layer, framed 0x0057
    echo = bytes.fromhex("6000000000083a40") + ev.config.address.packed + SERVER6.packed
    echo += bytes.fromhex("8000000000000000")
    p.client.send_ip(echo)
    p.run()
    assert p.server_ip() == [echo]
    # and global IPv6 from the server reaches the client's I/O layer
    reply = bytes.fromhex("6000000000083a40") + SERVER6.packed + ev.config.address.packed
    reply += bytes.fromhex("8100000000000000")
    p.server.send_ip(reply)
    p.run()
    assert p.client_ip() == [reply]


def test_client_stops_soliciting_once_answered_and_never_starts_without_ipv6cp() -> None:
    p = Pair(ipv6=True)
    p.run()  # an IPv4-only server: IPV6CP is rejected, no RS timer left behind
    assert p.client._solicitor is None and p.client.ipv6 is None
    p = ipv6_pair()
    p.run()
    solicitor = p.client._solicitor
    assert solicitor is not None and solicitor.config is not None
    assert solicitor.get_timer() is None  # the RA answered: no more RS (timing: autoconf tests)
