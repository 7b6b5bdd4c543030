"""EAP-MS-CHAP-V2 (sstpd.proto.ppp.eap): the docs/protocol/eap-mschapv2.md §7 vector byte for byte,
codec round trips, every kind of bad input, and hypothesis runs of decoder and automaton."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.auth import AuthResult
from sstpd.proto.ppp.eap import (
    EapCode,
    EapPacket,
    EapPeer,
    EapServer,
    EapType,
    MsChapV2Message,
    MsOpCode,
    response_data,
)
from sstpd.proto.ppp.frame import Packet

H = bytes.fromhex

# --------------------------------------------------------------------------- §1.7 vector
# User "User", password "clientPass" (RFC 2759 §9.2), server name "sstpd", EAP ids 1/2/3,
# MS-CHAPv2-ID 2. The bytes are the EAP packets of docs/protocol/eap-mschapv2.md §7, verbatim.
V_IDENTITY_REQ = H("01 01 00 05 01")
V_IDENTITY_RESP = H("02 01 00 09 01 55 73 65 72")
V_CHALLENGE = H(
    "01 02 00 1F 1A 01 02 00 1A 10"
    "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28  73 73 74 70 64"
)
V_RESPONSE = H(
    "02 02 00 3F 1A 02 02 00 3A 31"
    "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E"
    "00 00 00 00 00 00 00 00"
    "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF"
    "00 55 73 65 72"
)
V_SUCCESS_REQ = H("01 03 00 38 1A 03 02 00 33") + b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=OK"
V_SUCCESS_RESP = H("02 03 00 06 1A 03")
V_EAP_SUCCESS = H("03 03 00 04")
V_SEND_KEY = H("8B7CDC149B993A1BA118CB153F56DCCB")
V_RECEIVE_KEY = H("D5F0E9521E3EA9589645E86051C82226")
V_HLAK = H("D5F0E9521E3EA9589645E86051C822268B7CDC149B993A1BA118CB153F56DCCB")
V_AUTH_CHALLENGE = H("5B5D7C7D7B3F2F3E3C2C602132262628")
V_PEER_CHALLENGE = H("21402324255E262A28295F2B3A337C7E")

USERS = {"User": mschap.nt_password_hash("clientPass")}


def scripted_random(*chunks: bytes) -> Callable[[int], bytes]:
    queue = list(chunks)
    counter = itertools.count(7)

    def random(n: int) -> bytes:
        if queue:
            chunk = queue.pop(0)
            assert len(chunk) == n
            return chunk
        return bytes((next(counter) * 41) & 0xFF for _ in range(n))

    return random


class Server:
    """An EapServer with its output, reports and notices collected."""

    def __init__(self, retries: int = 0, random: Callable[[int], bytes] | None = None) -> None:
        self.sent: list[bytes] = []
        self.reports: list[AuthResult] = []
        self.notices: list[tuple[str, str]] = []
        self.eap = EapServer(
            lambda p: self.sent.append(p.encode()),
            self.reports.append,
            lookup=USERS.get,
            random=random or scripted_random(b"\x00", V_AUTH_CHALLENGE),
            retries=retries,
            notice=lambda level, text: self.notices.append((level, text)),
        )
        self.eap.start(0.0)

    def feed(self, raw: bytes, now: float = 0.0) -> list[bytes]:
        before = len(self.sent)
        self.eap.receive(Packet.decode(raw), now)
        return self.sent[before:]


def test_vector_authenticator_byte_for_byte_and_hlak() -> None:
    srv = Server()
    assert srv.sent == [V_IDENTITY_REQ]
    assert srv.feed(V_IDENTITY_RESP) == [V_CHALLENGE]
    assert srv.feed(V_RESPONSE) == [V_SUCCESS_REQ]
    assert srv.reports == []  # EAP-Success only after the MS-CHAPv2 success exchange
    assert srv.feed(V_SUCCESS_RESP) == [V_EAP_SUCCESS]
    assert srv.reports == [AuthResult(True, "User", "eap-mschapv2", V_HLAK)]
    assert srv.eap.get_timer() is None and srv.notices == []


def test_vector_keys_msk_and_hlak() -> None:
    nt_response = V_RESPONSE[10 + 16 + 8 : 10 + 16 + 8 + 24]
    master = mschap.master_key(USERS["User"], nt_response)
    send = mschap.asymmetric_start_key(master, 16, is_send=True, is_server=True)
    receive = mschap.asymmetric_start_key(master, 16, is_send=False, is_server=True)
    assert (send, receive) == (V_SEND_KEY, V_RECEIVE_KEY)
    msk = receive + send + bytes(32)  # [MS-CHAP] §3.1.5.1
    assert msk[:32] == V_HLAK == mschap.hlak(USERS["User"], nt_response)


def test_vector_peer_byte_for_byte() -> None:
    sent: list[bytes] = []
    reports: list[AuthResult] = []
    peer = EapPeer(
        lambda p: sent.append(p.encode()),
        reports.append,
        username="User",
        nt_hash=USERS["User"],
        random=scripted_random(V_PEER_CHALLENGE),
    )
    for request in (V_IDENTITY_REQ, V_CHALLENGE, V_SUCCESS_REQ, V_EAP_SUCCESS):
        peer.receive(Packet.decode(request), 0.0)
    assert sent == [V_IDENTITY_RESP, V_RESPONSE, V_SUCCESS_RESP]
    assert reports == [AuthResult(True, "User", "eap-mschapv2", V_HLAK)]


# --------------------------------------------------------------------------- codecs

eap_packets = st.one_of(
    st.builds(
        EapPacket,
        st.sampled_from([EapCode.REQUEST, EapCode.RESPONSE]),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=300),
    ),
    st.builds(EapPacket, st.sampled_from([EapCode.SUCCESS, EapCode.FAILURE]), st.integers(0, 255)),
)
ms_messages = st.one_of(
    st.builds(MsChapV2Message, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300)),
    st.builds(
        MsChapV2Message,
        st.sampled_from([MsOpCode.SUCCESS, MsOpCode.FAILURE]),
        st.just(0),
        st.just(b""),
        st.just(True),
    ),
)


@given(eap_packets, st.binary(max_size=8))
def test_eap_packet_round_trip_padding_ignored(packet: EapPacket, padding: bytes) -> None:
    raw = packet.encode()
    assert EapPacket.decode(raw) == packet
    assert EapPacket.decode(raw + padding) == packet  # RFC 3748 §4.1: beyond Length = padding


@given(ms_messages)
def test_mschapv2_message_round_trip(message: MsChapV2Message) -> None:
    raw = message.encode()
    decoded = MsChapV2Message.decode(raw)
    if len(raw) == 1:
        assert decoded == message
    else:
        assert (decoded.opcode, decoded.ms_id, decoded.data) == (
            message.opcode,
            message.ms_id,
            message.data,
        )


@given(st.binary(max_size=80))
def test_eap_decoder_fuzz(raw: bytes) -> None:
    try:
        packet = EapPacket.decode(raw)
    except ParseError:
        return
    length = int.from_bytes(raw[2:4], "big")
    assert packet.encode() == raw[:length]


@given(st.binary(max_size=80))
def test_mschapv2_decoder_fuzz(raw: bytes) -> None:
    try:
        message = MsChapV2Message.decode(raw)
    except ParseError:
        return
    assert message.encode() == raw


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (H("02 01 00"), "shorter than its header"),
        (H("02 01 00 09 01 55"), "EAP Length 9 does not fit the 6 bytes"),
        (H("02 01 00 03"), "EAP Length 3"),
        (H("02 01 00 04"), "without a Type"),
        (H("03 01 00 05 00"), "Length 5, not 4"),
        (H("05 01 00 04"), "unknown EAP Code 5"),
    ],
)
def test_eap_decoder_errors(raw: bytes, error: str) -> None:
    with pytest.raises(ParseError, match=error):
        EapPacket.decode(raw)


def test_mschapv2_decoder_errors() -> None:
    with pytest.raises(ParseError, match="MS-Length 9 but 6 bytes"):
        MsChapV2Message.decode(H("02 02 00 09 31 00"))
    with pytest.raises(ParseError, match="shorter than its header"):
        MsChapV2Message.decode(H("02 02"))
    with pytest.raises(ParseError):
        MsChapV2Message.decode(H("02"))  # only Success/Failure Responses are one byte


# --------------------------------------------------------------------------- bad input


def at_challenge(retries: int = 0) -> Server:
    srv = Server(retries)
    srv.feed(V_IDENTITY_RESP)
    return srv


def response(eap_id: int, ms_id: int, password: str, name: bytes = b"User") -> bytes:
    challenge = V_AUTH_CHALLENGE
    nt = mschap.generate_nt_response(
        challenge, V_PEER_CHALLENGE, name.decode(), mschap.nt_password_hash(password)
    )
    data = MsChapV2Message(MsOpCode.RESPONSE, ms_id, response_data(V_PEER_CHALLENGE, nt, name))
    return EapPacket(EapCode.RESPONSE, eap_id, EapType.MSCHAPV2, data.encode()).encode()


@pytest.mark.parametrize(
    ("raw", "notice"),
    [
        (H("02 02 00 0A 1A 02 02 00 3A 31"), "MS-Length 58 but 5 bytes"),
        (V_RESPONSE[:1] + b"\x07" + V_RESPONSE[2:], "Response id 7 does not answer Request 2"),
        (response(2, 9, "clientPass"), "MS-CHAPv2-ID 9 in a Response to 2"),
        (V_SUCCESS_RESP[:1] + b"\x02" + V_SUCCESS_RESP[2:], "short SUCCESS (3) while waiting"),
        (H("02 02 00 05 04"), "Response type MD5_CHALLENGE (4) to an MS-CHAP-V2 Request"),
        (H("02 02 00 05 63"), "Response type 99 to an MS-CHAP-V2 Request"),
        (H("01 02 00 05 01"), "REQUEST (1) from the client"),
        (H("03 02 00 04"), "SUCCESS (3) from the client"),
        (H("09 02 00 04"), "unknown EAP Code 9"),
        (H("02 02 00 0A 1A 02 02 00 05 31"), "malformed MS-CHAPv2 Response"),
        (H("02 02 00 06 1A 07"), "shorter than its header"),
    ],
)
def test_bad_input_is_discarded_with_a_notice(raw: bytes, notice: str) -> None:
    srv = at_challenge()
    assert srv.feed(raw) == []
    assert srv.reports == []
    [(level, text)] = srv.notices
    assert notice in text, text
    assert level == ("debug" if "does not answer" in notice else "warning")
    # the exchange goes on: the right Response still succeeds
    assert srv.feed(V_RESPONSE) == [V_SUCCESS_REQ]


def test_success_response_before_success_request_never_gives_eap_success() -> None:
    srv = at_challenge()
    for _ in range(3):
        assert srv.feed(V_SUCCESS_RESP[:1] + b"\x02" + V_SUCCESS_RESP[2:]) == []
    assert srv.reports == [] and all(p[0] != EapCode.SUCCESS for p in srv.sent)


def test_flood_of_invalid_packets_ends_the_exchange() -> None:
    srv = at_challenge()
    for i in range(16):
        srv.feed(H("02 09 00 05 01"), float(i))
    assert srv.sent[-1] == H("04 02 00 04")  # EAP-Failure
    [result] = srv.reports
    assert not result.success and "16 invalid EAP packets" in result.reason
    assert len(srv.notices) == 4  # logged, but not 16 times
    assert srv.feed(V_RESPONSE) == []  # over


def test_eap_after_the_exchange_is_ignored_with_a_debug_notice() -> None:
    srv = at_challenge()
    srv.feed(V_RESPONSE)
    srv.feed(V_SUCCESS_RESP)
    assert srv.feed(V_SUCCESS_RESP) == [] and srv.feed(V_IDENTITY_RESP) == []
    assert [level for level, _ in srv.notices] == ["debug", "debug"]
    assert "after the exchange ended" in srv.notices[0][1]
    assert len(srv.reports) == 1


def test_legacy_nak_toward_tls_ends_cleanly_naming_the_wanted_types() -> None:
    srv = at_challenge()
    assert srv.feed(H("02 02 00 07 03 0D 19")) == [H("04 02 00 04")]  # EAP-Failure
    [result] = srv.reports
    assert not result.success and result.retry is False
    assert result.reason == (
        "client wants EAP type TLS (13), PEAP (25); this server offers MS-CHAP-V2 (26)"
    )
    srv = at_challenge()
    assert srv.feed(H("02 02 00 06 03 00")) == [H("04 02 00 04")]
    assert "client wants EAP type none" in srv.reports[0].reason


def test_wrong_password_failure_request_echoes_ms_id_then_eap_failure() -> None:
    srv = at_challenge()
    [failure] = srv.feed(response(2, 2, "wrong"))
    packet = EapPacket.decode(failure)
    message = MsChapV2Message.decode(packet.data)
    assert (packet.code, packet.identifier, packet.type) == (1, 3, 26)
    assert (message.opcode, message.ms_id) == (MsOpCode.FAILURE, 2)
    assert message.data.startswith(b"E=691 R=0 C=")
    assert message.data.endswith(b" V=3 M=Authentication failure")
    assert srv.reports == []  # reported with the Failure-Response
    assert srv.feed(H("02 03 00 06 1A 04")) == [H("04 03 00 04")]
    assert srv.reports == [
        AuthResult(False, "User", "eap-mschapv2", code=691, reason="authentication failure")
    ]


def test_silent_peer_after_failure_request_is_reported_after_three_transmissions() -> None:
    srv = at_challenge()
    [failure] = srv.feed(response(2, 2, "wrong"))
    for now in (3.0, 6.0, 9.0):
        srv.eap.handle_timer(now)
    assert srv.sent[-3:-1] == [failure, failure]
    assert srv.sent[-1] == H("04 03 00 04")
    assert srv.reports[0].code == 691 and srv.eap.get_timer() is None


@pytest.mark.parametrize("style", ["failure-response", "direct-response"])
def test_retry_after_r1_with_either_peer_style(style: str) -> None:
    new_challenge = bytes(range(16))
    srv = Server(1, scripted_random(b"\x00", V_AUTH_CHALLENGE, new_challenge))
    srv.feed(V_IDENTITY_RESP)
    [failure] = srv.feed(response(2, 2, "wrong"))
    text = MsChapV2Message.decode(EapPacket.decode(failure).data).data.decode()
    assert text.startswith(f"E=691 R=1 C={new_challenge.hex().upper()} V=3")
    assert srv.reports[0].retry is True
    nt = mschap.generate_nt_response(
        new_challenge, V_PEER_CHALLENGE, "User", mschap.nt_password_hash("clientPass")
    )
    if style == "failure-response":
        [challenge] = srv.feed(H("02 03 00 06 1A 04"))
        packet = EapPacket.decode(challenge)
        message = MsChapV2Message.decode(packet.data)
        assert message.opcode == MsOpCode.CHALLENGE and message.data[1:17] == new_challenge
        eap_id, ms_id = packet.identifier, message.ms_id
        assert ms_id == 3
    else:  # RFC 2759 style: a new Response at once, to the C= challenge, MS-CHAPv2-ID + 1
        eap_id, ms_id = 3, 3
    body = MsChapV2Message(MsOpCode.RESPONSE, ms_id, response_data(V_PEER_CHALLENGE, nt, b"User"))
    [success] = srv.feed(EapPacket(2, eap_id, 26, body.encode()).encode())
    assert MsChapV2Message.decode(EapPacket.decode(success).data).ms_id == ms_id
    srv.feed(EapPacket(2, EapPacket.decode(success).identifier, 26, b"\x03").encode())
    assert srv.reports[-1].success and srv.reports[-1].hlak == mschap.hlak(
        mschap.nt_password_hash("clientPass"), nt
    )


def test_domain_identity_and_name_mismatch() -> None:
    srv = Server()
    srv.feed(H("02 01 00 0E 01") + b"CORP\\User")
    srv.feed(response(2, 2, "clientPass", b"CORP\\User"))
    srv.feed(H("02 03 00 06 1A 03"))
    assert srv.reports[0].success and srv.reports[0].username == "User"
    srv = Server()
    srv.feed(H("02 01 00 0A 01") + b"Mallory")
    [failure] = srv.feed(response(2, 2, "clientPass"))
    assert b"E=691" in failure
    srv.feed(H("02 03 00 06 1A 04"))
    assert "not the EAP identity" in srv.reports[0].reason


def test_client_refusing_our_authenticator_response_fails() -> None:
    srv = at_challenge()
    srv.feed(V_RESPONSE)
    assert srv.feed(H("02 03 00 06 1A 04")) == [H("04 03 00 04")]
    assert srv.reports[0].reason == "client refused the server's authenticator response"


def test_requests_are_retransmitted_and_peer_answers_the_retransmission() -> None:
    srv = Server()
    srv.eap.handle_timer(3.0)
    assert srv.sent == [V_IDENTITY_REQ, V_IDENTITY_REQ]
    sent: list[bytes] = []
    peer = EapPeer(lambda p: sent.append(p.encode()), lambda r: None, username="User",
                   nt_hash=USERS["User"], random=scripted_random())  # fmt: skip
    peer.receive(Packet.decode(V_IDENTITY_REQ), 0.0)
    peer.receive(Packet.decode(V_IDENTITY_REQ), 3.0)
    assert sent == [V_IDENTITY_RESP, V_IDENTITY_RESP]


def test_peer_naks_other_types_and_rejects_early_success_and_bad_s() -> None:
    sent: list[bytes] = []
    reports: list[AuthResult] = []
    peer = EapPeer(lambda p: sent.append(p.encode()), reports.append, username="User",
                   nt_hash=USERS["User"], random=scripted_random(V_PEER_CHALLENGE))  # fmt: skip
    peer.receive(Packet.decode(H("01 05 00 06 0D 20")), 0.0)  # EAP-TLS Start
    assert sent == [H("02 05 00 06 03 1A")]  # legacy Nak asking for 26
    peer.receive(Packet.decode(V_CHALLENGE), 0.0)
    bad = V_SUCCESS_REQ.replace(b"S=407A", b"S=507A")
    peer.receive(Packet.decode(bad), 0.0)
    assert sent[-1] == H("02 03 00 06 1A 04")
    assert reports == [AuthResult(False, "User", "eap-mschapv2", reason="server not authenticated")]
    reports.clear()
    peer = EapPeer(lambda p: None, reports.append, username="User", nt_hash=USERS["User"],
                   random=scripted_random())  # fmt: skip
    peer.receive(Packet.decode(V_EAP_SUCCESS), 0.0)
    assert reports[0].success is False and "before the MS-CHAPv2" in reports[0].reason


# --------------------------------------------------------------------------- automaton fuzz

PEER_INPUTS = [
    V_IDENTITY_RESP,
    V_RESPONSE,
    response(2, 2, "wrong"),
    V_SUCCESS_RESP,
    H("02 03 00 06 1A 04"),
    H("02 02 00 06 1A 04"),
    H("02 03 00 06 1A 03"),
    H("02 02 00 07 03 0D 19"),
    H("02 04 00 06 1A 03"),
    H("02 04 00 06 1A 04"),
    H("02 02 00 05 01"),
    H("03 03 00 04"),
]
steps = st.lists(
    st.one_of(
        st.sampled_from(PEER_INPUTS),
        st.binary(min_size=4, max_size=70).map(lambda b: b[:2] + len(b).to_bytes(2, "big") + b[4:]),
        st.floats(0.0, 5.0),
    ),
    max_size=40,
)


# Prefixes that reach every state, so the random tail also runs after them.
PREFIXES: list[list[bytes | float]] = [
    [],
    [V_IDENTITY_RESP],
    [V_IDENTITY_RESP, V_RESPONSE],
    [V_IDENTITY_RESP, V_RESPONSE, V_SUCCESS_RESP],
    [V_IDENTITY_RESP, response(2, 2, "wrong")],
    [V_IDENTITY_RESP, response(2, 2, "wrong"), H("02 03 00 06 1A 04")],
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PREFIXES), steps, st.integers(0, 2))
def test_authenticator_state_machine_fuzz(
    prefix: list[bytes | float], sequence: list[bytes | float], retries: int
) -> None:
    srv = Server(retries)
    now = 0.0
    for step in prefix + sequence:
        if isinstance(step, float):
            now += step
            srv.eap.handle_timer(now)
        else:
            srv.eap.receive(Packet.decode(step), now)
    finals = [r for r in srv.reports if not r.retry]
    assert len(finals) <= 1
    assert sum(not r.success for r in srv.reports) <= retries + 1
    for i, raw in enumerate(srv.sent):
        if raw[0] == EapCode.SUCCESS:
            # EAP-Success: only after a Success-Request, with the one success report
            assert any(p[0] == 1 and p[4:6] == b"\x1a\x03" for p in srv.sent[:i])
            assert finals == [AuthResult(True, "User", "eap-mschapv2", V_HLAK)]
            assert i == len(srv.sent) - 1
    if finals:
        assert srv.eap.get_timer() is None
        assert srv.sent[-1][0] in (EapCode.SUCCESS, EapCode.FAILURE)


SERVER_INPUTS = [V_IDENTITY_REQ, V_CHALLENGE, V_SUCCESS_REQ, V_EAP_SUCCESS, H("04 03 00 04")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(SERVER_INPUTS),
            st.binary(min_size=4, max_size=70).map(
                lambda b: b[:2] + len(b).to_bytes(2, "big") + b[4:]
            ),
        ),
        max_size=30,
    )
)
def test_peer_fuzz_never_raises_and_succeeds_only_after_checking_s(sequence: list[bytes]) -> None:
    reports: list[AuthResult] = []
    peer = EapPeer(lambda p: None, reports.append, username="User", nt_hash=USERS["User"],
                   random=scripted_random(V_PEER_CHALLENGE))  # fmt: skip
    for raw in sequence:
        peer.receive(Packet.decode(raw), 0.0)
    assert len([r for r in reports if not r.retry]) <= 1
    for result in reports:
        if result.success:
            assert result.hlak == V_HLAK  # only the real S= response leads here
