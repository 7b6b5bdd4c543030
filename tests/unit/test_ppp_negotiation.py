"""PppServer/PppClient against the literal option sets real peers send.

Frames are written as hex the way they appear on the wire inside SSTP data packets.
"""

from __future__ import annotations

import itertools
import struct
from ipaddress import IPv4Address

from sstpd.proto import mschap
from sstpd.proto.ppp.frame import Code, Option, Packet, Protocol, decode_frame, decode_options
from sstpd.proto.ppp.link import (
    AuthSucceeded,
    LinkDown,
    NetworkUp,
    Notice,
    Phase,
    PppClient,
    PppClientConfig,
    PppServer,
    PppServerConfig,
)

PEER = IPv4Address("10.8.0.2")
LOCAL = IPv4Address("10.8.0.1")
USERS = {"alice": mschap.nt_password_hash("wonderland")}


def counter_random() -> object:
    counter = itertools.count(1)

    def random(n: int) -> bytes:
        return bytes(next(counter) & 0xFF or 1 for _ in range(n))

    return random


class Wire:
    """Feeds literal frames to one PPP end and decodes what it answers."""

    def __init__(self, end: PppServer | PppClient) -> None:
        self.end = end
        self.now = 0.0

    def feed(self, hexframe: str) -> list[tuple[int, Packet]]:
        self.end.receive_frame(bytes.fromhex(hexframe.replace(" ", "")), self.now)
        return self.out()

    def out(self) -> list[tuple[int, Packet]]:
        result = []
        for frame in self.end.frames_to_send():
            assert frame[:2] == b"\xff\x03"
            protocol, off = decode_frame(frame)
            result.append((protocol, Packet.decode(frame[off:])))
        return result


def server(**overrides: object) -> tuple[PppServer, Wire, Packet]:
    config = PppServerConfig(local_address=LOCAL, **overrides)  # type: ignore[arg-type]
    srv = PppServer(
        config,
        lookup=USERS.get,
        assign_address=lambda user: PEER,
        random=counter_random(),  # type: ignore[arg-type]
        now=0.0,
    )
    wire = Wire(srv)
    srv.lower_up(0.0)
    [(protocol, request)] = wire.out()
    assert protocol == Protocol.LCP and request.code == Code.CONFIGURE_REQUEST
    return srv, wire, request


def frame(protocol: int, code: int, ident: int, data: str | bytes) -> str:
    raw = bytes.fromhex(data) if isinstance(data, str) else data
    return (b"\xff\x03" + struct.pack("!H", protocol) + Packet(code, ident, raw).encode()).hex()


def lcp(code: int, ident: int, data: str | bytes) -> str:
    return frame(Protocol.LCP, code, ident, data)


def ack_ours(wire: Wire, request: Packet) -> list[tuple[int, Packet]]:
    return wire.feed(lcp(Code.CONFIGURE_ACK, request.identifier, request.data))


# --------------------------------------------------------------------------- LCP

WINDOWS_ENDPOINT = "1317" + "01" + "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344"
WINDOWS_LCP = "01040ffb05065a1b3c4d070208020d03061104064e" + WINDOWS_ENDPOINT
WINDOWS_LCP_RETRY = "01040ffb05065a1b3c4d07020802"


MSCHAP_FIRST = ("mschapv2", "pap")


def test_windows_lcp_request_rejects_callback_mrru_endpoint_then_acks() -> None:
    srv, wire, ours = server(auth_methods=MSCHAP_FIRST)
    assert decode_options(ours.data)[0] == Option(3, b"\xc2\x23\x81")  # MS-CHAPv2 first
    reply = wire.feed(lcp(Code.CONFIGURE_REQUEST, 0, WINDOWS_LCP))
    assert reply == [
        (
            Protocol.LCP,
            Packet(Code.CONFIGURE_REJECT, 0, bytes.fromhex("0d03061104064e" + WINDOWS_ENDPOINT)),
        )
    ]
    reply = wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, WINDOWS_LCP_RETRY))
    assert reply == [
        (Protocol.LCP, Packet(Code.CONFIGURE_ACK, 1, bytes.fromhex(WINDOWS_LCP_RETRY)))
    ]
    out = wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    assert srv.phase is Phase.AUTHENTICATE
    assert srv.peer_mru == 4091
    [(protocol, challenge)] = out
    assert protocol == Protocol.CHAP and challenge.code == 1
    assert challenge.data[0] == 16 and challenge.data[17:] == b"sstpd"


PPPD_LCP = "0206000000000506deadbeef07020802"  # asyncmap 0, magic, pcomp, accomp


def chap_login(wire: Wire, challenge: Packet, name: str, password: str) -> list[tuple[int, Packet]]:
    ac = challenge.data[1:17]
    pc = bytes(range(16))
    nt = mschap.generate_nt_response(ac, pc, name, mschap.nt_password_hash(password))
    data = bytes([49]) + pc + bytes(8) + nt + b"\x00" + name.encode()
    return wire.feed(frame(Protocol.CHAP, 2, challenge.identifier, data))


def pppd_to_network(wire: Wire, ours: Packet) -> Packet:
    assert wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP)) == [
        (Protocol.LCP, Packet(Code.CONFIGURE_ACK, 1, bytes.fromhex(PPPD_LCP)))
    ]
    [(_, challenge)] = wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    out = chap_login(wire, challenge, "alice", "wonderland")
    assert [p.code for _, p in out] == [3, 1]
    assert out[0][1].data.endswith(b" M=Welcome")
    assert out[1][0] == Protocol.IPCP
    return out[1][1]


def test_default_asks_for_eap_then_identity() -> None:
    srv, wire, ours = server()
    assert decode_options(ours.data)[0] == Option(3, b"\xc2\x27")  # EAP first by default
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 0, WINDOWS_LCP_RETRY))
    [(protocol, identity)] = ack_ours(wire, ours)
    assert protocol == Protocol.EAP and srv.phase is Phase.AUTHENTICATE
    assert identity.code == 1 and identity.data == b"\x01"  # Request/Identity, no text


def test_pppd_defaults_lcp_ipcp_and_protocol_rejects() -> None:
    srv, wire, ours = server(dns=(IPv4Address("9.9.9.9"),), auth_methods=MSCHAP_FIRST)
    ipcp_request = pppd_to_network(wire, ours)
    assert ipcp_request.data == bytes.fromhex("03060a080001")
    assert srv.phase is Phase.NETWORK
    # IPCP: compress VJ 0f 01 + addr 0.0.0.0 (pppd 2.4.9 without noccp/novj tweaks)
    reply = wire.feed(frame(Protocol.IPCP, 1, 1, "0206002d0f01030600000000"))
    assert reply == [
        (Protocol.IPCP, Packet(Code.CONFIGURE_REJECT, 1, bytes.fromhex("0206002d0f01")))
    ]
    reply = wire.feed(frame(Protocol.IPCP, 1, 2, "030600000000"))
    assert reply == [(Protocol.IPCP, Packet(Code.CONFIGURE_NAK, 2, bytes.fromhex("03060a080002")))]
    reply = wire.feed(frame(Protocol.IPCP, 1, 3, "03060a080002"))
    assert reply == [(Protocol.IPCP, Packet(Code.CONFIGURE_ACK, 3, bytes.fromhex("03060a080002")))]
    assert wire.feed(frame(Protocol.IPCP, 2, ipcp_request.identifier, ipcp_request.data)) == []
    events = srv.pop_events()
    assert isinstance(events[0], AuthSucceeded) and events[0].username == "alice"
    assert events[1] == NetworkUp(LOCAL, PEER, (IPv4Address("9.9.9.9"),))
    assert srv.is_network_up and srv.peer_address == PEER
    # IPV6CP Configure-Request (interface identifier) -> LCP Protocol-Reject
    ipv6cp = Packet(1, 1, bytes.fromhex("010a0102030405060708")).encode()
    [(protocol, rej)] = wire.feed(frame(Protocol.IPV6CP, 1, 1, "010a0102030405060708"))
    assert protocol == Protocol.LCP and rej.code == Code.PROTOCOL_REJECT
    assert rej.data == b"\x80\x57" + ipv6cp
    # CCP (MPPE request) -> Protocol-Reject as well
    [(protocol, rej)] = wire.feed(frame(Protocol.CCP, 1, 1, "120601000060"))
    assert protocol == Protocol.LCP and rej.code == Code.PROTOCOL_REJECT
    assert rej.data[:2] == b"\x80\xfd"
    # IPv4 data is the session's data path (every encoding: tests/unit/test_session.py),
    # not the link's: in any encoding (ACFC + PFC too) it is counted, never rejected
    dropped = srv.dropped
    assert wire.feed("ff030021450000") == []
    assert wire.feed("21450001") == []
    assert srv.pop_events() == [] and srv.dropped == dropped + 2


def test_windows_ipcp_with_nbns_and_secondary_dns_unconfigured() -> None:
    _srv, wire, ours = server(dns=(IPv4Address("9.9.9.9"),), auth_methods=MSCHAP_FIRST)
    pppd_to_network(wire, ours)
    windows = "030600000000810600000000820600000000830600000000840600000000"
    [(_, reply)] = wire.feed(frame(Protocol.IPCP, 1, 5, windows))
    assert reply == Packet(4, 5, bytes.fromhex("820600000000830600000000840600000000"))
    [(_, reply)] = wire.feed(frame(Protocol.IPCP, 1, 6, "030600000000810600000000"))
    assert reply == Packet(3, 6, bytes.fromhex("03060a080002810609090909"))
    [(_, reply)] = wire.feed(frame(Protocol.IPCP, 1, 7, "03060a080002810609090909"))
    assert reply.code == Code.CONFIGURE_ACK


def test_ipcp_and_unknown_protocols_before_network_phase_are_dropped() -> None:
    srv, wire, ours = server(auth_methods=MSCHAP_FIRST)
    assert wire.feed(frame(Protocol.IPV6CP, 1, 1, "")) == []  # LCP not opened yet
    assert wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))[0][1].code == Code.CONFIGURE_ACK
    [(protocol, _)] = ack_ours(wire, ours)
    assert protocol == Protocol.CHAP and srv.phase is Phase.AUTHENTICATE
    assert wire.feed(frame(Protocol.IPCP, 1, 1, "030600000000")) == []
    assert wire.feed("ff030021450000") == []
    assert srv.pop_events() == []


def test_peer_nak_switches_auth_to_pap() -> None:
    _srv, wire, ours = server()
    [(_, new)] = wire.feed(lcp(Code.CONFIGURE_NAK, ours.identifier, "0304c023"))
    assert Option(3, b"\xc0\x23") in decode_options(new.data)
    assert new.identifier != ours.identifier


def test_nak_followed_both_ways_between_eap_and_mschapv2() -> None:
    # a PowerShell-default Windows profile (MS-CHAPv2 only) Naks EAP toward MS-CHAPv2
    _srv, wire, ours = server()
    [(_, new)] = wire.feed(lcp(Code.CONFIGURE_NAK, ours.identifier, "0305c22381"))
    assert decode_options(new.data)[0] == Option(3, b"\xc2\x23\x81")
    # a Settings-app profile (EAP only) Naks MS-CHAPv2 toward EAP
    _srv, wire, ours = server(auth_methods=(*MSCHAP_FIRST, "eap-mschapv2"))
    [(_, new)] = wire.feed(lcp(Code.CONFIGURE_NAK, ours.identifier, "0304c227"))
    assert decode_options(new.data)[0] == Option(3, b"\xc2\x27")


def test_nak_ping_pong_cannot_loop_and_names_what_the_peer_asked_for() -> None:
    srv, wire, ours = server()
    [(_, new)] = wire.feed(lcp(Code.CONFIGURE_NAK, ours.identifier, "0305c22381"))
    [(_, new)] = wire.feed(lcp(Code.CONFIGURE_NAK, new.identifier, "0304c227"))  # back to EAP?
    assert decode_options(new.data)[0] == Option(3, b"\xc0\x23")  # no: the untried PAP
    [(_, term)] = wire.feed(lcp(Code.CONFIGURE_NAK, new.identifier, "0305c22305"))
    assert term.code == Code.TERMINATE_REQUEST
    wire.feed(lcp(Code.TERMINATE_ACK, term.identifier, ""))
    assert srv.pop_events() == [
        LinkDown(
            "peer refused every configured authentication method: it asked for MS-CHAPv2, "
            "EAP, CHAP-MD5; configured: eap-mschapv2, mschapv2, pap"
        )
    ]


def test_pap_preference_requests_pap_first() -> None:
    _, _, ours = server(auth_methods=("pap", "mschapv2"))
    assert decode_options(ours.data)[0] == Option(3, b"\xc0\x23")


def test_nak_toward_disallowed_method_and_reject_of_auth_end_the_link() -> None:
    srv, wire, ours = server(auth_methods=("mschapv2",))
    out = wire.feed(lcp(Code.CONFIGURE_NAK, ours.identifier, "0304c023"))
    assert [p.code for _, p in out] == [Code.TERMINATE_REQUEST]
    srv.handle_timer(100.0)
    srv.handle_timer(200.0)
    assert srv.pop_events() == [
        LinkDown(
            "peer refused every configured authentication method: it asked for PAP; "
            "configured: mschapv2"
        )
    ]

    srv, wire, ours = server(auth_methods=MSCHAP_FIRST)
    out = wire.feed(lcp(Code.CONFIGURE_REJECT, ours.identifier, "0305c22381"))
    [(_, term)] = out
    assert term.code == Code.TERMINATE_REQUEST
    wire.feed(lcp(Code.TERMINATE_ACK, term.identifier, ""))
    assert srv.pop_events() == [
        LinkDown(
            "peer refused to authenticate (Configure-Reject of the Authentication-Protocol"
            " option); configured: mschapv2, pap"
        )
    ]
    assert srv.phase is Phase.DEAD


def test_magic_number_loop_and_zero_are_naked() -> None:
    _srv, wire, ours = server()
    our_magic = next(o for o in decode_options(ours.data) if o.type == 5)
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, our_magic.encode()))
    assert nak.code == Code.CONFIGURE_NAK
    [suggested] = decode_options(nak.data)
    assert suggested.type == 5 and suggested.data not in (our_magic.data, bytes(4))
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 2, "050600000000"))
    assert nak.code == Code.CONFIGURE_NAK


def test_small_mru_is_naked_and_our_mru_requested_when_configured() -> None:
    _, wire, ours = server(mru=1400)
    assert decode_options(ours.data)[0] == Option(1, b"\x05\x78")
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, "01040040"))
    assert nak == Packet(Code.CONFIGURE_NAK, 1, bytes.fromhex("01040080"))


def test_lcp_echo_and_discard_in_opened() -> None:
    _srv, wire, ours = server()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))
    wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    our_magic = next(o for o in decode_options(ours.data) if o.type == 5).data
    [(protocol, reply)] = wire.feed(lcp(Code.ECHO_REQUEST, 33, "deadbeef7061796c6f6164"))
    assert protocol == Protocol.LCP
    assert reply == Packet(Code.ECHO_REPLY, 33, our_magic + b"payload")
    assert wire.feed(lcp(Code.DISCARD_REQUEST, 34, "deadbeef")) == []
    assert wire.feed(lcp(12, 35, "deadbeef4d535241532d302d57494e")) == []  # Identification
    [(_, rej)] = wire.feed(lcp(99, 36, ""))
    assert rej.code == Code.CODE_REJECT


def test_lcp_negotiation_gives_up_after_max_configure() -> None:
    srv, wire, _ = server()
    now, sent = 0.0, 1
    while (deadline := srv.get_timer()) is not None:
        now = deadline
        srv.handle_timer(now)
        sent += len(wire.out())
    assert sent == 10
    assert srv.pop_events() == [LinkDown("LCP negotiation did not converge")]
    assert now == 30.0


def test_auth_timeout_ends_the_link_and_challenge_is_retransmitted() -> None:
    srv, wire, ours = server()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))
    [(_, challenge)] = wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    srv.handle_timer(3.0)
    [(_, again)] = wire.out()
    assert again == challenge
    srv.handle_timer(30.0)
    assert [p.code for _, p in wire.out()][-1] == Code.TERMINATE_REQUEST
    srv.handle_timer(33.0)
    srv.handle_timer(36.0)
    assert srv.pop_events() == [LinkDown("authentication timeout")]


def test_address_pool_exhausted_terminates() -> None:
    config = PppServerConfig(local_address=LOCAL, auth_methods=MSCHAP_FIRST)
    srv = PppServer(
        config,
        lookup=USERS.get,
        assign_address=lambda user: None,
        random=counter_random(),  # type: ignore[arg-type]
        now=0.0,
    )
    wire = Wire(srv)
    srv.lower_up(0.0)
    [(_, ours)] = wire.out()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))
    [(_, challenge)] = wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    out = chap_login(wire, challenge, "alice", "wonderland")
    assert [(p, pk.code) for p, pk in out] == [(Protocol.CHAP, 3), (Protocol.LCP, 5)]
    assert out[1][1].data == b"address pool exhausted"
    wire.feed(lcp(Code.TERMINATE_ACK, out[1][1].identifier, ""))
    assert srv.pop_events()[-1] == LinkDown("address pool exhausted")


# --------------------------------------------------------------------------- client role


def client(**overrides: object) -> tuple[PppClient, Wire, Packet]:
    settings: dict[str, object] = {"username": "alice", "password": "wonderland"}
    settings.update(overrides)
    config = PppClientConfig(**settings)  # type: ignore[arg-type]
    cli = PppClient(config, random=counter_random(), now=0.0)  # type: ignore[arg-type]
    wire = Wire(cli)
    cli.lower_up(0.0)
    [(_, request)] = wire.out()
    return cli, wire, request


def test_client_naks_unsupported_auth_with_its_preference() -> None:
    _, wire, ours = client()
    assert {o.type for o in decode_options(ours.data)} == {5}  # only magic
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, "0305c22305"))  # CHAP-MD5
    assert nak == Packet(Code.CONFIGURE_NAK, 1, bytes.fromhex("0304c227"))  # EAP first
    _, wire, ours = client(auth_methods=("mschapv2", "pap"))
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 2, "0304c227"))  # EAP
    assert nak == Packet(Code.CONFIGURE_NAK, 2, bytes.fromhex("0305c22381"))
    [(_, ack)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 3, "0304c023"))  # PAP
    assert ack.code == Code.CONFIGURE_ACK


def test_client_without_password_cannot_do_pap() -> None:
    _, wire, _ = client(password=None, nt_hash=mschap.nt_password_hash("x"))
    [(_, nak)] = wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, "0304c023"))
    assert nak == Packet(Code.CONFIGURE_NAK, 1, bytes.fromhex("0304c227"))


def test_client_ipcp_follows_server_naks_and_drops_rejected_options() -> None:
    cli, wire, ours = client()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, "0506cafebabe"))  # no auth requested
    out = wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    [(protocol, req)] = out
    assert protocol == Protocol.IPCP
    assert req.data == bytes.fromhex("030600000000810600000000830600000000")
    [(_, req2)] = wire.feed(frame(Protocol.IPCP, 4, req.identifier, "830600000000"))
    assert req2.data == bytes.fromhex("030600000000810600000000")
    [(_, req3)] = wire.feed(frame(Protocol.IPCP, 3, req2.identifier, "03060a080002810609090909"))
    assert req3.data == bytes.fromhex("03060a080002810609090909")
    [(_, ack)] = wire.feed(frame(Protocol.IPCP, 1, 7, "03060a080001"))
    assert ack.code == Code.CONFIGURE_ACK
    wire.feed(frame(Protocol.IPCP, 2, req3.identifier, req3.data))
    assert cli.pop_events() == [
        NetworkUp(PEER, LOCAL, (IPv4Address("9.9.9.9"),)),
    ]
    # and the client rejects VJ compression from a server that asks for it
    [(_, again), (_, rej)] = wire.feed(frame(Protocol.IPCP, 1, 8, "0206002d0f0103060a080001"))
    assert again.code == Code.CONFIGURE_REQUEST  # Opened + RCR-: tld, scr, scn
    assert rej == Packet(Code.CONFIGURE_REJECT, 8, bytes.fromhex("0206002d0f01"))


# --------------------------------------------------------------------------- EAP on the link


def eap_open() -> tuple[PppServer, Wire, Packet]:
    srv, wire, ours = server()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 0, WINDOWS_LCP_RETRY))
    [(_, identity)] = ack_ours(wire, ours)
    srv.pop_events()
    return srv, wire, identity


def test_identification_ignored_with_debug_notices_and_a_flood_goes_quiet() -> None:
    srv, wire, _ = eap_open()
    for i in range(20):
        assert wire.feed(lcp(12, 40 + i, "5a1b3c4d" + b"MSRASV5.20".hex())) == []
    notices = srv.pop_events()
    assert notices[0] == Notice("debug", "LCP Identification 'MSRASV5.20' ignored")
    assert [n.level for n in notices] == ["debug"] * 8 + ["info"]  # type: ignore[union-attr]
    assert srv.phase is Phase.AUTHENTICATE  # nothing else happened


def test_eap_length_beyond_the_frame_is_dropped_padding_is_ignored() -> None:
    srv, wire, identity = eap_open()
    assert wire.feed(frame_raw(Protocol.EAP, bytes([2, identity.identifier, 0, 9, 1, 0x55]))) == []
    [notice] = srv.pop_events()
    assert notice == Notice(
        "warning", "EAP packet ignored: control packet length 9 does not fit 6 bytes"
    )
    padded = bytes([2, identity.identifier, 0, 9, 1]) + b"User" + b"\0\0\0"
    [(protocol, challenge)] = wire.feed(frame_raw(Protocol.EAP, padded))
    assert protocol == Protocol.EAP and challenge.data[:2] == b"\x1a\x01"
    [notice] = srv.pop_events()
    assert notice.level == "debug" and "padding" in notice.message  # type: ignore[union-attr]


def test_eap_before_the_authenticate_phase_is_dropped_with_a_notice() -> None:
    srv, wire, _ = server()
    assert wire.feed(frame_raw(Protocol.EAP, bytes.fromhex("0201000901") + b"User")) == []
    assert srv.pop_events() == [Notice("debug", "EAP packet ignored in the Establish phase")]
    for _ in range(10):
        wire.feed(frame_raw(Protocol.EAP, bytes.fromhex("0201000901") + b"User"))
    assert len(srv.pop_events()) == 3  # four lines in all, then silence


def frame_raw(protocol: int, payload: bytes) -> str:
    return (b"\xff\x03" + struct.pack("!H", protocol) + payload).hex()
