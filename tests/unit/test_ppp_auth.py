"""PAP and MS-CHAPv2 state machines on their own, with the RFC 2759 §9.2 vectors."""

from __future__ import annotations

from collections.abc import Callable

from sstpd.proto import mschap
from sstpd.proto.ppp.auth import (
    ZERO_HLAK,
    AuthResult,
    MsChapV2Peer,
    MsChapV2Server,
    PapPeer,
    PapServer,
    parse_failure,
)
from sstpd.proto.ppp.frame import Packet

AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
NT_HASH = mschap.nt_password_hash("clientPass")
AUTH_RESPONSE = b"S=407A5589115FD0D6209F510FE9C04566932CDA56"
HLAK = bytes.fromhex("D5F0E9521E3EA9589645E86051C822268B7CDC149B993A1BA118CB153F56DCCB")
USERS = {"User": NT_HASH}


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    queue = list(chunks)

    def random(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return random


def response_data(name: bytes, nt_response: bytes = NT_RESPONSE) -> bytes:
    return bytes([49]) + PEER_CHALLENGE + bytes(8) + nt_response + b"\x00" + name


class Collector:
    def __init__(self) -> None:
        self.sent: list[Packet] = []
        self.results: list[AuthResult] = []


def chap_server(retries: int = 0, *challenges: bytes) -> tuple[MsChapV2Server, Collector]:
    c = Collector()
    srv = MsChapV2Server(
        c.sent.append,
        c.results.append,
        lookup=USERS.get,
        random=scripted(b"\x07", AUTH_CHALLENGE, *challenges),
        retries=retries,
    )
    srv.start(0.0)
    return srv, c


def test_server_challenge_then_rfc_vector_response_succeeds() -> None:
    srv, c = chap_server()
    assert c.sent == [Packet(1, 7, b"\x10" + AUTH_CHALLENGE + b"sstpd")]
    srv.receive(Packet(2, 7, response_data(b"User")), 1.0)
    assert c.sent[-1] == Packet(3, 7, AUTH_RESPONSE + b" M=Welcome")
    assert c.results == [AuthResult(True, "User", "mschapv2", HLAK)]
    assert srv.get_timer() is None
    # a repeated Response (our Success was lost) gets the same Success again
    srv.receive(Packet(2, 7, response_data(b"User")), 2.0)
    assert c.sent[-1] == c.sent[-2]
    assert len(c.results) == 1


def test_server_accepts_domain_prefixed_name() -> None:
    srv, c = chap_server()
    srv.receive(Packet(2, 7, response_data(b"CORP\\User")), 1.0)
    assert c.results[0].success and c.results[0].username == "User"


def test_server_retransmits_challenge_on_restart_timer() -> None:
    srv, c = chap_server()
    assert srv.get_timer() == 3.0
    srv.handle_timer(2.9)
    assert len(c.sent) == 1
    srv.handle_timer(3.0)
    assert c.sent == [c.sent[0]] * 2
    assert srv.get_timer() == 6.0


def test_server_wrong_password_and_unknown_user_look_the_same() -> None:
    new = bytes(range(16))
    srv, c = chap_server(0, new)
    srv.receive(Packet(2, 7, response_data(b"User", bytes(24))), 1.0)
    wrong = c.sent[-1]
    srv2, c2 = chap_server(0, new)
    srv2.receive(Packet(2, 7, response_data(b"Nobody")), 1.0)
    unknown = c2.sent[-1]
    assert wrong == unknown
    expected = b"E=691 R=0 C=" + new.hex().upper().encode() + b" V=3 M=Authentication failure"
    assert wrong == Packet(4, 7, expected)
    assert c.results[0].code == 691 and not c.results[0].retry
    # no further attempts
    srv.receive(Packet(2, 8, response_data(b"User")), 2.0)
    assert c.results == c.results[:1]


def test_server_retry_with_new_challenge_then_success() -> None:
    new = bytes(range(16))
    srv, c = chap_server(1, new, bytes(16))
    srv.receive(Packet(2, 7, response_data(b"User", bytes(24))), 1.0)
    assert c.sent[-1].data.startswith(b"E=691 R=1 C=000102")
    assert c.results[-1].retry
    nt = mschap.generate_nt_response(new, PEER_CHALLENGE, "User", NT_HASH)
    srv.receive(Packet(2, 8, response_data(b"User", nt)), 2.0)
    assert c.results[-1].success
    assert c.sent[-1].code == 3 and c.sent[-1].identifier == 8


def test_server_drops_malformed_or_foreign_responses() -> None:
    srv, c = chap_server()
    srv.receive(Packet(2, 9, response_data(b"User")), 1.0)  # wrong identifier
    srv.receive(Packet(2, 7, b"\x31" + bytes(10)), 1.0)  # truncated
    srv.receive(Packet(2, 7, b"\x10" + bytes(60)), 1.0)  # wrong value size
    srv.receive(Packet(3, 7, b"S=00"), 1.0)  # not a Response
    assert c.results == [] and len(c.sent) == 1


def test_peer_response_matches_rfc_vector_and_verifies_success() -> None:
    c = Collector()
    peer = MsChapV2Peer(
        c.sent.append,
        c.results.append,
        username="User",
        nt_hash=NT_HASH,
        random=scripted(PEER_CHALLENGE),
    )
    peer.receive(Packet(1, 3, b"\x10" + AUTH_CHALLENGE + b"srv"), 0.0)
    assert c.sent == [Packet(2, 3, response_data(b"User"))]
    peer.receive(Packet(1, 3, b"\x10" + AUTH_CHALLENGE + b"srv"), 3.0)  # retransmitted
    assert c.sent == [c.sent[0]] * 2
    peer.receive(Packet(3, 3, AUTH_RESPONSE + b" M=hi"), 4.0)
    assert c.results == [AuthResult(True, "User", "mschapv2", HLAK)]


def test_peer_rejects_wrong_authenticator_response() -> None:
    c = Collector()
    peer = MsChapV2Peer(
        c.sent.append,
        c.results.append,
        username="User",
        nt_hash=NT_HASH,
        random=scripted(PEER_CHALLENGE),
    )
    peer.receive(Packet(1, 3, b"\x10" + AUTH_CHALLENGE), 0.0)
    peer.receive(Packet(3, 3, b"S=" + b"0" * 40), 1.0)
    assert c.results[0].success is False and not c.results[0].retry


def test_peer_parses_failure_and_retries_with_new_challenge() -> None:
    c = Collector()
    peer = MsChapV2Peer(
        c.sent.append,
        c.results.append,
        username="User",
        nt_hash=bytes(16),
        random=scripted(PEER_CHALLENGE, PEER_CHALLENGE),
    )
    peer.receive(Packet(1, 3, b"\x10" + bytes(16)), 0.0)
    msg = b"E=691 R=1 C=" + AUTH_CHALLENGE.hex().encode() + b" V=3 M=bad password, try again"
    peer.receive(Packet(4, 3, msg), 1.0)
    assert c.results[-1] == AuthResult(
        False, "User", "mschapv2", code=691, reason="bad password, try again", retry=True
    )
    assert peer.retry(NT_HASH, 2.0)
    assert c.sent[-1] == Packet(2, 4, response_data(b"User"))
    assert not peer.retry(NT_HASH, 2.0)


def test_parse_failure_fields() -> None:
    fields = parse_failure("E=648 R=0 C=00112233445566778899AABBCCDDEEFF V=3 M=Password expired")
    assert fields == {
        "E": "648",
        "R": "0",
        "C": "00112233445566778899AABBCCDDEEFF",
        "V": "3",
        "M": "Password expired",
    }
    assert parse_failure("E=691") == {"E": "691"}


def pap_request(ident: int, user: bytes, password: bytes) -> Packet:
    return Packet(1, ident, bytes([len(user)]) + user + bytes([len(password)]) + password)


def test_pap_server_checks_nt_hash_of_password() -> None:
    c = Collector()
    srv = PapServer(c.sent.append, c.results.append, lookup=USERS.get)
    srv.receive(pap_request(1, b"DOM\\User", b"clientPass"), 0.0)
    assert c.sent == [Packet(2, 1, b"\x07Welcome")]
    assert c.results == [AuthResult(True, "User", "pap", ZERO_HLAK)]


def test_pap_server_nak_and_retries() -> None:
    c = Collector()
    srv = PapServer(c.sent.append, c.results.append, lookup=USERS.get, retries=1)
    srv.receive(pap_request(1, b"User", b"nope"), 0.0)
    assert c.sent[-1].code == 3 and c.results[-1].retry
    srv.receive(pap_request(2, b"Ghost", b"clientPass"), 0.0)
    assert c.sent[-1].code == 3 and not c.results[-1].retry and c.results[-1].code == 691
    srv.receive(pap_request(3, b"User", b"clientPass"), 0.0)
    assert len(c.results) == 2
    srv.receive(Packet(1, 4, b"\x05ab"), 0.0)  # malformed: dropped
    assert len(c.results) == 2


def test_pap_peer_retransmits_then_gives_up() -> None:
    c = Collector()
    peer = PapPeer(c.sent.append, c.results.append, username="u", password="p", max_transmits=3)
    peer.start(0.0)
    assert c.sent == [Packet(1, 1, b"\x01u\x01p")]
    now = 0.0
    while (deadline := peer.get_timer()) is not None:
        now = deadline
        peer.handle_timer(now)
    assert len(c.sent) == 3 and now == 9.0
    assert c.results[0].success is False


def test_pap_peer_ack_and_nak() -> None:
    c = Collector()
    peer = PapPeer(c.sent.append, c.results.append, username="u", password="p")
    peer.start(0.0)
    peer.receive(Packet(3, 1, b"\x04nope"), 1.0)
    assert c.results[-1].reason == "nope" and c.results[-1].code == 691
    assert peer.retry("q", 2.0)
    assert c.sent[-1] == Packet(1, 2, b"\x01u\x01q")
    peer.receive(Packet(2, 2, b"\x00"), 3.0)
    assert c.results[-1].success and peer.get_timer() is None
