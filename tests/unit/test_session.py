"""The session glue (SSTP + PPP) in memory: a client and a server session moving bytes."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network

import pytest

from sstpd.proto.datapath import FAMILY_OF, Family, data_prefix, encode_ip_packet
from sstpd.proto.mschap import nt_password_hash
from sstpd.proto.pool import AddressPool
from sstpd.proto.ppp.frame import decode_frame
from sstpd.proto.ppp.link import PppClientConfig, PppServerConfig
from sstpd.proto.session import (
    AuthFailed,
    AuthSucceeded,
    ClientSession,
    IpReceived,
    ServerSession,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.sstp.constants import HashProtocol
from sstpd.proto.sstp.packets import parse_header
from tests.integration.client_tool import udp

SERVER_IP = IPv4Address("10.77.0.1")
HASHES = {HashProtocol.SHA256: b"\x11" * 32, HashProtocol.SHA1: b"\x22" * 20}


def _random() -> object:
    counter = itertools.count()
    return lambda n: bytes((next(counter) + i) % 256 for i in range(n))


class Pair:
    def __init__(
        self,
        method: str = "mschapv2",
        password: str = "pw",
        client_hashes: dict[HashProtocol, bytes] | None = None,
        user: str = "alice",
    ) -> None:
        self.pool = AddressPool(IPv4Network("10.77.0.0/24"), exclude=[SERVER_IP])
        rnd = _random()
        self.server = ServerSession(
            ppp_config=PppServerConfig(local_address=SERVER_IP, dns=(IPv4Address("10.77.0.53"),)),
            cert_hashes=HASHES,
            hash_protocols=3,
            lookup=lambda n: nt_password_hash("pw") if n == "alice" else None,
            assign_address=lambda n: self.pool.allocate(),
            random=rnd,
            now=0.0,  # type: ignore[arg-type]
        )
        self.client = ClientSession(
            host="vpn",
            random=rnd,
            now=0.0,  # type: ignore[arg-type]
            ppp_config=PppClientConfig(username=user, password=password, auth_methods=(method,)),
            cert_hashes=client_hashes or HASHES,
        )
        self.server_events: list[object] = []
        self.client_events: list[object] = []
        self.now = 0.0
        self.client.start(0.0)

    def run(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            moved = False
            data = self.client.data_to_send()
            if data:
                self.server.receive_data(data, self.now)
                moved = True
            data = self.server.data_to_send()
            if data:
                self.client.receive_data(data, self.now)
                moved = True
            self.server_events += self.server.pop_events()
            self.client_events += self.client.pop_events()
            if not moved:
                return


def _types(events: list[object]) -> list[type]:
    return [type(e) for e in events]


@pytest.mark.parametrize("method", ["mschapv2", "pap"])
def test_both_sides_open_with_sha256_binding(method: str) -> None:
    p = Pair(method)
    p.run()
    assert p.server.is_open and p.client.is_open
    assert _types(p.server_events) == [AuthSucceeded, SessionOpened]
    opened = p.server_events[1]
    assert isinstance(opened, SessionOpened)
    assert opened.peer == p.client.local_address == IPv4Address("10.77.0.2")
    assert opened.hash_protocol is HashProtocol.SHA256
    assert p.client.dns == (IPv4Address("10.77.0.53"),)
    assert p.server.username == "alice" and p.server.auth_method == method


def test_wrong_password_closes_with_691() -> None:
    p = Pair(password="nope")
    p.run()
    failed = [e for e in p.server_events if isinstance(e, AuthFailed)]
    assert failed and failed[0].code == 691
    assert isinstance(p.server_events[-1], SessionClosed)
    assert not p.server.is_open and not p.client.is_open


def test_wrong_certificate_hash_aborts_without_opening() -> None:
    p = Pair(client_hashes={HashProtocol.SHA256: b"\x42" * 32})
    p.run()
    p.now = 10.0  # past the abort timers
    p.server.handle_timer(p.now)
    p.server_events += p.server.pop_events()
    assert not any(isinstance(e, SessionOpened) for e in p.server_events)
    closed = [e for e in p.server_events if isinstance(e, SessionClosed)]
    assert closed and "cert hash" in closed[0].reason


def test_ip_slow_path_checks_the_source_address() -> None:
    p = Pair()
    p.run()
    me, server = p.client.local_address, SERVER_IP
    assert me is not None
    p.client.send_ip(udp(me, server, 1, 2, b"legit"))
    p.client.send_ip(udp(IPv4Address("10.77.0.250"), server, 1, 2, b"forged"))
    p.run()
    got = [e.packet for e in p.server_events if isinstance(e, IpReceived)]
    assert len(got) == 1 and got[0].endswith(b"legit")
    assert p.server.counters.dropped_spoofed == 1
    assert p.server.counters.rx_packets == 1


def test_data_frames_before_the_binding_are_dropped() -> None:
    p = Pair()
    # run only until the server acked the Call Connect Request: PPP has not finished
    p.server.receive_data(p.client.data_to_send(), 0.0)
    p.client.receive_data(p.server.data_to_send(), 0.0)
    p.server.receive_data(p.client.data_to_send(), 0.0)
    assert not p.server.is_open
    before = p.server.counters.dropped_not_open
    frame = b"\xff\x03\x00\x21" + udp(IPv4Address("10.77.0.2"), SERVER_IP, 1, 2, b"early")
    p.server.receive_packet(False, frame, 0.0)
    assert p.server.counters.dropped_not_open == before + 1
    assert not any(isinstance(e, IpReceived) for e in p.server.pop_events())


def test_peer_terminating_ppp_then_closing_is_reported_as_such() -> None:
    p = Pair()
    p.run()
    p.client.link.close("User request", 1.0)
    p.client.receive_data(b"", 1.0)  # pump the client's LCP Terminate-Request out
    p.run()
    p.server.abort_connection("connection lost", 1.5)
    closed = [e for e in p.server.pop_events() if isinstance(e, SessionClosed)]
    assert [c.reason for c in closed] == ["PPP terminated"]


@pytest.mark.parametrize(
    "prefix,family,offset",
    [
        (b"\xff\x03\x00\x21", Family.IPV4, 4),
        (b"\xff\x03\x21", Family.IPV4, 3),
        (b"\x00\x21", Family.IPV4, 2),
        (b"\x21", Family.IPV4, 1),
        (b"\xff\x03\x00\x57", Family.IPV6, 4),
        (b"\x57", Family.IPV6, 1),
        (b"\xff\x03\xc0\x21", None, 4),
        (b"\xc0\x21", None, 2),
    ],
)
def test_ip_frames_in_every_encoding(prefix: bytes, family: Family | None, offset: int) -> None:
    protocol, off = decode_frame(prefix + b"E" * 20)
    assert (FAMILY_OF.get(protocol), off) == (family, offset)


@pytest.mark.parametrize("prefix", [b"\xff\x03\x00\x21", b"\xff\x03\x21", b"\x00\x21", b"\x21"])
def test_slow_path_takes_ipv4_in_every_encoding_without_the_link(prefix: bytes) -> None:
    p = Pair()
    p.run()
    me = p.client.local_address
    assert me is not None and p.server.is_open
    dropped = p.server.link.dropped
    pkt = udp(me, SERVER_IP, 1, 2, b"acfc/pfc")
    p.server.receive_packet(False, prefix + pkt, p.now)
    assert [e.packet for e in p.server.pop_events() if isinstance(e, IpReceived)] == [pkt]
    assert p.server.counters.rx_packets == 1 and p.server.counters.rx_bytes == len(pkt)
    assert p.server.link.dropped == dropped  # decoded once, in the session: never the link's


def test_data_prefix_per_family() -> None:
    assert data_prefix(20) == bytes.fromhex("1000001c ff030021")
    assert data_prefix(40, Family.IPV6) == bytes.fromhex("10000030 ff030057")


def test_encode_ip_packet_is_one_sstp_data_packet() -> None:
    pkt = udp(IPv4Address("10.77.0.1"), IPv4Address("10.77.0.2"), 1, 2, b"x" * 100)
    wire = encode_ip_packet(pkt)
    assert parse_header(wire) == (False, len(wire))
    assert decode_frame(wire[4:]) == (0x0021, 4) and wire[8:] == pkt
