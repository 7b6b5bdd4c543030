"""The session glue (SSTP + PPP) in memory: a client and a server session moving bytes."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network

import pytest

from sstpd.proto.mschap import nt_password_hash
from sstpd.proto.pool import AddressPool
from sstpd.proto.ppp.link import PppClientConfig, PppServerConfig
from sstpd.proto.session import (
    Authenticated,
    AuthenticationFailed,
    ClientSession,
    IpReceived,
    ServerSession,
    SessionClosed,
    SessionOpened,
    encode_ip_packet,
    ip_payload_offset,
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
    assert _types(p.server_events) == [Authenticated, SessionOpened]
    opened = p.server_events[1]
    assert isinstance(opened, SessionOpened)
    assert opened.peer == p.client.local_address == IPv4Address("10.77.0.2")
    assert opened.hash_protocol is HashProtocol.SHA256
    assert p.client.dns == (IPv4Address("10.77.0.53"),)
    assert p.server.username == "alice" and p.server.auth_method == method


def test_wrong_password_closes_with_691() -> None:
    p = Pair(password="nope")
    p.run()
    failed = [e for e in p.server_events if isinstance(e, AuthenticationFailed)]
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
    "prefix,offset",
    [
        (b"\xff\x03\x00\x21", 4),
        (b"\xff\x03\x21", 3),
        (b"\x00\x21", 2),
        (b"\x21", 1),
        (b"\xff\x03\xc0\x21", -1),
        (b"\xc0\x21", -1),
        (b"", -1),
    ],
)
def test_ip_payload_offset(prefix: bytes, offset: int) -> None:
    assert ip_payload_offset(prefix + b"E" * 20) == offset


def test_encode_ip_packet_is_one_sstp_data_packet() -> None:
    pkt = udp(IPv4Address("10.77.0.1"), IPv4Address("10.77.0.2"), 1, 2, b"x" * 100)
    wire = encode_ip_packet(pkt)
    assert parse_header(wire) == (False, len(wire))
    assert ip_payload_offset(wire[4:]) == 4 and wire[8:] == pkt
