"""SSTP state machines driven with an injected clock: pair harness, timers, NAK/abort rules."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from sstpd.proto.sstp.binding import build_call_connected, cert_hashes
from sstpd.proto.sstp.connection import (
    CLIENT_TRANSITIONS,
    SERVER_TRANSITIONS,
    TEARDOWN_STATES,
    TIMER_ACTIONS,
    CallConnectAcked,
    CallConnected,
    CallConnectRequested,
    ConnectionClosed,
    Event,
    PppFrameReceived,
    RequestAccepted,
    RequestRejected,
    SstpClientConnection,
    SstpServerConnection,
    State,
    Timeouts,
    Transitions,
)
from sstpd.proto.sstp.constants import AttributeId, HashProtocol, MessageType, Status
from sstpd.proto.sstp.http import build_request
from sstpd.proto.sstp.packets import (
    ControlMessage,
    CryptoBinding,
    CryptoBindingRequest,
    EncapsulatedProtocolId,
    PacketReader,
    StatusInfo,
    UnknownAttribute,
    decode_control,
    encode_control,
    encode_data,
)

CERT = cert_hashes(b"0\x82 a certificate in DER")
HLAK = hashlib.sha256(b"hlak").digest()
CORR = "{11111111-2222-4333-8444-555555555555}"
REQUEST = build_request("vpn.example", CORR)
N = bytes(32)
LCP = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
IP = b"\xff\x03\x00\x21" + bytes(20)


class Rng:
    """Deterministic ``random`` callable."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(next(self._counter).to_bytes(8, "big")).digest()
        return out[:n]


def server(now: float = 0.0, **kw: object) -> SstpServerConnection:
    return SstpServerConnection(cert_hashes=CERT, random=Rng(), now=now, **kw)  # type: ignore[arg-type]


def client(now: float = 0.0, **kw: object) -> SstpClientConnection:
    return SstpClientConnection(host="vpn.example", random=Rng(), now=now, **kw)  # type: ignore[arg-type]


def ctl(msg_type: int, *attrs: object) -> bytes:
    return encode_control(ControlMessage(msg_type, attrs))  # type: ignore[arg-type]


CONNECT_REQUEST = ctl(MessageType.CALL_CONNECT_REQUEST, EncapsulatedProtocolId(1))


def packets(data: bytes) -> list[ControlMessage | bytes]:
    """Decode an output stream: ControlMessage for control packets, payload bytes for data."""
    reader = PacketReader()
    reader.feed(data)
    out: list[ControlMessage | bytes] = []
    while (pkt := reader.next_packet()) is not None:
        out.append(decode_control(pkt[1]) if pkt[0] else pkt[1])
    return out


def abort_msg(attrib_id: int, status: int) -> ControlMessage:
    return ControlMessage(MessageType.CALL_ABORT, (StatusInfo(attrib_id, status),))


def closed_event(events: list[Event]) -> ConnectionClosed:
    assert isinstance(events[-1], ConnectionClosed), events
    return events[-1]


def server_in(state: State, now: float = 0.0) -> tuple[SstpServerConnection, bytes]:
    """A server driven to ``state``; returns it and the nonce it sent (if any)."""
    s = server(now)
    s.receive_data(REQUEST, now)
    s.data_to_send()
    nonce = b""
    if state is not State.SERVER_CONNECT_REQUEST_PENDING:
        s.receive_data(CONNECT_REQUEST, now)
        ack = packets(s.data_to_send())[-1]
        assert isinstance(ack, ControlMessage)
        binding = ack.attributes[0]
        assert isinstance(binding, CryptoBindingRequest)
        nonce = binding.nonce
    if state is State.SERVER_CALL_CONNECTED:
        s.set_hlak(HLAK, now)
        s.receive_data(call_connected(nonce), now)
    assert s.state is state
    s.data_to_send()
    s.pop_events()
    return s, nonce


def call_connected(nonce: bytes, proto: HashProtocol = HashProtocol.SHA256, **kw: bytes) -> bytes:
    args = {"nonce": nonce, "cert_hash": CERT[proto], "hlak": HLAK, **kw}
    return build_call_connected(hash_protocol=proto, **args)


# -- client/server pair ---------------------------------------------------------------


class Pair:
    def __init__(self, now: float = 0.0, **server_kw: object) -> None:
        self.now = now
        self.server = server(now, **server_kw)
        self.client = client(now)
        self.server_events: list[Event] = []
        self.client_events: list[Event] = []
        self.client.start(now)

    def pump(self) -> None:
        """Move bytes both ways until both sides are quiet."""
        while True:
            c2s, s2c = self.client.data_to_send(), self.server.data_to_send()
            if not c2s and not s2c:
                break
            if c2s:
                self.server.receive_data(c2s, self.now)
            if s2c:
                self.client.receive_data(s2c, self.now)
        self.server_events += self.server.pop_events()
        self.client_events += self.client.pop_events()


def test_pair_handshake_hlak_before_call_connected() -> None:
    pair = Pair()
    pair.pump()
    assert pair.server_events == [RequestAccepted(CORR_OF(pair), "vpn.example"),
                                  CallConnectRequested()]
    assert isinstance(pair.client_events[0], RequestAccepted)
    acked = pair.client_events[1]
    assert isinstance(acked, CallConnectAcked) and acked.hash_protocols == 3
    assert pair.server.state is State.SERVER_CALL_CONNECTED_PENDING
    pair.server.set_hlak(HLAK, 0.0)
    pair.client.send_call_connected(HLAK, CERT, 0.0)
    pair.pump()
    assert pair.server_events[-1] == CallConnected(HashProtocol.SHA256)
    assert pair.client_events[-1] == CallConnected(HashProtocol.SHA256)
    assert pair.server.is_call_connected and pair.client.is_call_connected
    assert pair.server.hash_protocol is HashProtocol.SHA256
    assert pair.server.correlation_id == pair.client.correlation_id


def CORR_OF(pair: Pair) -> str:
    return pair.client.correlation_id


def test_pair_handshake_call_connected_before_hlak_then_data() -> None:
    pair = Pair()
    pair.pump()
    pair.client.send_call_connected(HLAK, CERT, 1.0)
    pair.pump()
    assert pair.server.state is State.SERVER_CALL_CONNECTED_PENDING
    assert not any(isinstance(e, CallConnected) for e in pair.server_events)
    pair.server.set_hlak(HLAK, 2.0)
    assert pair.server.pop_events() == [CallConnected(HashProtocol.SHA256)]
    pair.client.send_ppp(IP)
    pair.server.send_ppp(LCP)
    pair.pump()
    assert pair.server_events[-1] == PppFrameReceived(IP)
    assert pair.client_events[-1] == PppFrameReceived(LCP)


def test_pair_sha1_only_server_and_graceful_disconnect() -> None:
    pair = Pair(hash_protocols=HashProtocol.SHA1)
    pair.pump()
    pair.server.set_hlak(HLAK, 0.0)
    pair.client.send_call_connected(HLAK, CERT, 0.0)
    pair.pump()
    assert pair.server_events[-1] == CallConnected(HashProtocol.SHA1)
    pair.client.disconnect(5.0)
    pair.pump()
    assert pair.client.closed
    assert closed_event(pair.client_events).graceful
    assert pair.server.state is State.CALL_DISCONNECT_TIMEOUT_PENDING
    pair.server.handle_timer(5.0 + 1.0)
    assert pair.server.closed and closed_event(pair.server.pop_events()).graceful


def test_ppp_frames_pass_before_call_connected() -> None:
    pair = Pair()
    pair.pump()
    pair.client.send_ppp(LCP)
    pair.server.send_ppp(LCP)
    pair.pump()
    assert pair.server_events[-1] == PppFrameReceived(LCP)
    assert pair.client_events[-1] == PppFrameReceived(LCP)


# -- HTTP phase -------------------------------------------------------------------------


def test_http_accept_and_leftover_processed_as_sstp() -> None:
    s = server()
    s.receive_data(REQUEST + CONNECT_REQUEST, 1.0)
    out = s.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert s.pop_events() == [RequestAccepted(CORR, "vpn.example"), CallConnectRequested()]
    assert s.state is State.SERVER_CALL_CONNECTED_PENDING and s.http_done


def test_http_reject() -> None:
    s = server()
    s.receive_data(REQUEST.replace(b"SSTP_DUPLEX_POST", b"POST"), 0.0)
    assert s.data_to_send().startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    events = s.pop_events()
    assert events[0] == RequestRejected(405, "Method Not Allowed")
    assert s.closed and closed_event(events).status is None
    s.receive_data(REQUEST, 1.0)
    assert s.data_to_send() == b"" and s.pop_events() == []


def test_http_timeout_closes_silently() -> None:
    s = server(10.0)
    assert s.get_timer() == 70.0
    s.receive_data(REQUEST[:20], 30.0)
    s.handle_timer(69.9)
    assert not s.closed
    s.handle_timer(70.0)
    assert s.closed and s.data_to_send() == b"" and s.get_timer() is None
    assert "HTTP" in closed_event(s.pop_events()).reason


def test_custom_timeouts() -> None:
    s = server(0.0, timeouts=Timeouts(http=5.0))
    assert s.get_timer() == 5.0


# -- negotiation timers -----------------------------------------------------------------


def _expect_abort(s: SstpServerConnection, attrib_id: int, status: int) -> None:
    assert packets(s.data_to_send()) == [abort_msg(attrib_id, status)]
    assert s.state is State.CALL_ABORT_PENDING


def test_negotiation_timeout_waiting_for_connect_request() -> None:
    s = server()
    s.receive_data(REQUEST, 1.0)
    s.data_to_send()
    assert s.get_timer() == 61.0
    s.handle_timer(60.0)
    assert s.data_to_send() == b""
    s.handle_timer(61.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.NEGOTIATION_TIMEOUT)
    assert s.get_timer() == 64.0  # abort timer 1
    s.handle_timer(64.0)
    ev = closed_event(s.pop_events())
    assert ev.status == Status.NEGOTIATION_TIMEOUT and not ev.graceful


def test_negotiation_timeout_waiting_for_call_connected() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED_PENDING, now=10.0)
    assert s.get_timer() == 70.0
    s.receive_data(encode_data(LCP), 50.0)  # PPP traffic does not restart it
    assert s.get_timer() == 70.0
    s.handle_timer(70.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.NEGOTIATION_TIMEOUT)


def test_negotiation_timeout_even_with_call_connected_waiting_for_hlak() -> None:
    s, nonce = server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.receive_data(call_connected(nonce), 1.0)
    s.handle_timer(60.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.NEGOTIATION_TIMEOUT)
    s.set_hlak(HLAK, 61.0)  # too late: ignored
    assert s.pop_events() == [] and s.state is State.CALL_ABORT_PENDING


# -- hello timer ----------------------------------------------------------------------------


def test_hello_echo_then_silent_close() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED, now=100.0)
    assert s.get_timer() == 160.0
    s.touch(130.0)
    assert s.get_timer() == 190.0
    s.handle_timer(160.0)  # stale deadline: nothing happens
    assert s.data_to_send() == b""
    s.handle_timer(190.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.ECHO_REQUEST)]
    assert s.get_timer() == 250.0
    s.handle_timer(250.0)
    assert s.closed and s.data_to_send() == b""  # no Call Abort
    assert not closed_event(s.pop_events()).graceful


def test_hello_answered_echo_restarts() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.handle_timer(60.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.ECHO_REQUEST)]
    s.receive_data(ctl(MessageType.ECHO_RESPONSE), 70.0)
    assert s.get_timer() == 130.0
    s.handle_timer(120.0)
    assert not s.closed
    s.handle_timer(130.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.ECHO_REQUEST)]
    s.touch(135.0)  # fast-path data counts as an answer
    s.handle_timer(190.0)
    assert not s.closed and s.get_timer() == 195.0


def test_echo_request_answered() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.receive_data(ctl(MessageType.ECHO_REQUEST), 5.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.ECHO_RESPONSE)]
    assert s.get_timer() == 65.0


# -- teardown -------------------------------------------------------------------------------


def test_local_abort_timer1() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.abort(Status.INVALID_FRAME_RECEIVED, 1.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.INVALID_FRAME_RECEIVED)
    s.receive_data(ctl(MessageType.ECHO_REQUEST) + encode_data(IP), 2.0)  # ignored
    assert s.data_to_send() == b"" and s.pop_events() == []
    s.handle_timer(3.9)
    assert not s.closed
    s.handle_timer(4.0)
    assert s.closed and closed_event(s.pop_events()).status == Status.INVALID_FRAME_RECEIVED


def test_local_abort_then_peer_abort_timer2() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.abort(Status.INVALID_FRAME_RECEIVED, 1.0)
    s.data_to_send()
    s.receive_data(ctl(MessageType.CALL_ABORT), 2.0)
    assert s.state is State.CALL_ABORT_TIMEOUT_PENDING and s.data_to_send() == b""
    assert s.get_timer() == 3.0
    s.handle_timer(3.0)
    assert s.closed


def test_peer_abort_received() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.receive_data(ctl(MessageType.CALL_ABORT, StatusInfo(0, Status.NEGOTIATION_TIMEOUT)), 7.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.CALL_ABORT)]
    assert s.state is State.CALL_ABORT_TIMEOUT_PENDING and s.get_timer() == 8.0
    s.receive_data(ctl(MessageType.CALL_ABORT), 7.5)  # ignored
    assert s.data_to_send() == b""
    s.handle_timer(8.0)
    ev = closed_event(s.pop_events())
    assert ev.status == Status.NEGOTIATION_TIMEOUT and not ev.graceful


def test_local_disconnect_acked_and_timer1() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.disconnect(1.0)
    assert s.data_to_send() == bytes.fromhex("10010014 0006 0001 0002000c 00000000 00000000"
                                             .replace(" ", ""))
    assert s.state is State.CALL_DISCONNECT_ACK_PENDING and s.get_timer() == 6.0
    s.receive_data(encode_data(IP) + ctl(MessageType.ECHO_REQUEST), 2.0)  # ignored
    assert s.data_to_send() == b"" and s.pop_events() == []
    s.receive_data(ctl(MessageType.CALL_DISCONNECT_ACK), 3.0)
    assert s.closed and closed_event(s.pop_events()).graceful

    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.disconnect(1.0)
    s.handle_timer(6.0)
    assert s.closed


def test_peer_disconnect_timer2() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.receive_data(ctl(MessageType.CALL_DISCONNECT, StatusInfo(0, 0)), 4.0)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.CALL_DISCONNECT_ACK)]
    assert s.state is State.CALL_DISCONNECT_TIMEOUT_PENDING and s.get_timer() == 5.0
    s.handle_timer(5.0)
    ev = closed_event(s.pop_events())
    assert ev.graceful and ev.status == 0


def test_crossed_disconnects() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.disconnect(1.0)
    s.data_to_send()
    s.receive_data(ctl(MessageType.CALL_DISCONNECT), 1.5)
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.CALL_DISCONNECT_ACK)]
    assert s.state is State.CALL_DISCONNECT_TIMEOUT_PENDING and s.get_timer() == 2.5


def test_disconnect_during_http_closes_at_once() -> None:
    s = server()
    s.disconnect(0.0)
    assert s.closed and s.data_to_send() == b""


def test_connection_lost() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.connection_lost()
    assert s.closed and s.data_to_send() == b""
    assert closed_event(s.pop_events()).reason == "connection lost"


# -- NAK rules (§3.3.5.2.2) -----------------------------------------------------------


V = Status.VALUE_NOT_SUPPORTED
NAK_CASES = [
    pytest.param(
        [EncapsulatedProtocolId(2)],
        [StatusInfo(1, V, b"\x00\x02")],
        id="protocol-not-ppp",
    ),
    pytest.param([], [StatusInfo(2, Status.REQUIRED_ATTRIBUTE_MISSING)], id="missing"),
    pytest.param(
        [EncapsulatedProtocolId(1), EncapsulatedProtocolId(1)],
        [StatusInfo(1, Status.DUPLICATE_ATTRIBUTE, b"\x00\x01")],
        id="duplicate",
    ),
    pytest.param(
        [EncapsulatedProtocolId(1), UnknownAttribute(0x33, b"hello")],
        [StatusInfo(0x33, Status.UNRECOGNIZED_ATTRIBUTE, b"hello")],
        id="unrecognized",
    ),
    pytest.param(
        [UnknownAttribute(1, b"\x00\x01\x00")],
        [StatusInfo(1, Status.INVALID_ATTRIB_VALUE_LENGTH, b"\x00\x01\x00")],
        id="bad-length",
    ),
    pytest.param(
        [EncapsulatedProtocolId(1), StatusInfo(0, Status.DUPLICATE_ATTRIBUTE)],
        [StatusInfo(2, Status.STATUS_INFO_NOT_SUPPORTED_IN_MSG, bytes.fromhex("0000000000000001"))],
        id="status-info",
    ),
    pytest.param(
        [EncapsulatedProtocolId(1), UnknownAttribute(0x40, bytes(100))],
        [StatusInfo(0x40, Status.UNRECOGNIZED_ATTRIBUTE, bytes(64))],
        id="echo-truncated-to-64",
    ),
]


@pytest.mark.parametrize(("attrs", "expected"), NAK_CASES)
def test_nak_for_bad_connect_request(attrs: list[object], expected: list[StatusInfo]) -> None:
    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    s.receive_data(ctl(MessageType.CALL_CONNECT_REQUEST, *attrs), 1.0)
    nak = encode_control(ControlMessage(MessageType.CALL_CONNECT_NAK, tuple(expected)))
    assert s.data_to_send() == nak
    assert s.state is State.SERVER_CONNECT_REQUEST_PENDING and s.pop_events() == []


def test_nak_exact_bytes_protocol_not_ppp() -> None:
    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    s.receive_data(bytes.fromhex("1001000e 0001 0001 00010006 0002".replace(" ", "")), 1.0)
    assert s.data_to_send() == bytes.fromhex(
        "10010016 0003 0001 0002000e 00000001 00000004 0002".replace(" ", "")
    )


def test_zero_status_info_in_connect_request_accepted() -> None:
    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    s.receive_data(ctl(1, StatusInfo(0, 0), EncapsulatedProtocolId(1)), 1.0)
    assert s.state is State.SERVER_CALL_CONNECTED_PENDING


def test_nak_retry_counter_then_abort_and_recovery() -> None:
    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    bad = ctl(MessageType.CALL_CONNECT_REQUEST, EncapsulatedProtocolId(7))
    for _ in range(3):
        s.receive_data(bad, 1.0)
        assert packets(s.data_to_send())[0].type == MessageType.CALL_CONNECT_NAK  # type: ignore[union-attr]
    s.receive_data(bad, 1.0)
    _expect_abort(s, AttributeId.STATUS_INFO, Status.RETRY_COUNT_EXCEEDED)

    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    for _ in range(3):
        s.receive_data(bad, 1.0)
    s.receive_data(CONNECT_REQUEST, 2.0)
    assert s.state is State.SERVER_CALL_CONNECTED_PENDING


def test_ack_carries_fresh_nonce_and_bitmask() -> None:
    acks = []
    for hp in (HashProtocol.SHA256, HashProtocol.SHA1 | HashProtocol.SHA256):
        s = server(hash_protocols=hp)
        s.receive_data(REQUEST + CONNECT_REQUEST, 0.0)
        out = s.data_to_send()
        acks.append(packets(out[out.index(b"\r\n\r\n") + 4 :])[0])
    first, second = acks
    assert isinstance(first, ControlMessage) and isinstance(second, ControlMessage)
    assert first.attributes[0] == CryptoBindingRequest(2, Rng()(32))
    assert second.attributes[0] == CryptoBindingRequest(3, Rng()(32))


def test_offer_limited_to_configured_cert_hashes() -> None:
    s = SstpServerConnection(
        cert_hashes={HashProtocol.SHA1: CERT[HashProtocol.SHA1]}, random=Rng(), now=0.0
    )
    s.receive_data(REQUEST + CONNECT_REQUEST, 0.0)
    assert bytes.fromhex("00040028 00000001") in s.data_to_send()
    with pytest.raises(ValueError):
        SstpServerConnection(cert_hashes={}, random=Rng(), now=0.0)


# -- crypto binding failures ----------------------------------------------------------


@pytest.mark.parametrize("hlak_first", [True, False])
@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda n: call_connected(bytes(32)), id="wrong-nonce"),
        pytest.param(lambda n: call_connected(n, cert_hash=bytes(32)), id="wrong-cert-hash"),
        pytest.param(lambda n: call_connected(n, hlak=bytes(32)), id="wrong-mac"),
        pytest.param(lambda n: call_connected(n, HashProtocol.SHA1), id="unoffered-protocol"),
    ],
)
def test_bad_binding_aborts_value_not_supported(hlak_first: bool, mutate: object) -> None:
    s = server(hash_protocols=HashProtocol.SHA256)
    s.receive_data(REQUEST + CONNECT_REQUEST, 0.0)
    out = s.data_to_send()
    ack = packets(out[out.index(b"\r\n\r\n") + 4 :])[0]
    nonce = ack.attributes[0].nonce  # type: ignore[union-attr]
    if hlak_first:
        s.set_hlak(HLAK, 1.0)
    s.receive_data(mutate(nonce), 2.0)  # type: ignore[operator]
    if not hlak_first:
        assert s.data_to_send() == b""
        s.set_hlak(HLAK, 3.0)
    _expect_abort(s, AttributeId.CRYPTO_BINDING, Status.VALUE_NOT_SUPPORTED)
    assert not any(isinstance(e, CallConnected) for e in s.pop_events())


@pytest.mark.parametrize(
    "attrs",
    [
        pytest.param((), id="no-attribute"),
        pytest.param((UnknownAttribute(3, bytes(99)),), id="bad-length"),
        pytest.param(
            (CryptoBinding(2, bytes(32), bytes(32), bytes(32)), StatusInfo(0, 5)),
            id="status-info",
        ),
        pytest.param((CryptoBindingRequest(2, bytes(32)),), id="wrong-attribute"),
    ],
)
def test_malformed_call_connected_aborts_attrib_not_supported(attrs: tuple[object]) -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.receive_data(ctl(MessageType.CALL_CONNECTED, *attrs), 1.0)
    _expect_abort(s, AttributeId.STATUS_INFO, Status.ATTRIB_NOT_SUPPORTED_IN_MSG)


# -- unexpected messages and bad input ------------------------------------------------


UNEXPECTED = [
    (State.SERVER_CONNECT_REQUEST_PENDING, ctl(MessageType.ECHO_REQUEST)),
    (State.SERVER_CONNECT_REQUEST_PENDING, ctl(MessageType.CALL_CONNECTED)),
    (State.SERVER_CONNECT_REQUEST_PENDING, ctl(MessageType.CALL_DISCONNECT_ACK)),
    (State.SERVER_CONNECT_REQUEST_PENDING, encode_data(LCP)),
    (State.SERVER_CALL_CONNECTED_PENDING, CONNECT_REQUEST),
    (State.SERVER_CALL_CONNECTED_PENDING, ctl(MessageType.ECHO_RESPONSE)),
    (State.SERVER_CALL_CONNECTED, CONNECT_REQUEST),
    (State.SERVER_CALL_CONNECTED, ctl(MessageType.CALL_CONNECT_ACK, CryptoBindingRequest(3, N))),
    (State.SERVER_CALL_CONNECTED, ctl(MessageType.CALL_CONNECT_NAK, StatusInfo(0, 1))),
]


@pytest.mark.parametrize(("state", "data"), UNEXPECTED)
def test_unexpected_message_aborts(state: State, data: bytes) -> None:
    s, _ = server_in(state)
    s.receive_data(data, 1.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.UNACCEPTED_FRAME_RECEIVED)


def test_second_call_connected_aborts() -> None:
    s, nonce = server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.receive_data(call_connected(nonce) * 2, 1.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.UNACCEPTED_FRAME_RECEIVED)


@pytest.mark.parametrize(
    "data",
    [ctl(0x0042), bytes.fromhex("1001000a 0001 0001 0001".replace(" ", ""))],
    ids=["unknown-type", "undecodable"],
)
def test_invalid_control_message_aborts(data: bytes) -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.receive_data(data, 1.0)
    _expect_abort(s, AttributeId.NO_ERROR, Status.INVALID_FRAME_RECEIVED)


@pytest.mark.parametrize(
    "data",
    [b"\x20\x01\x00\x08\x00\x08\x00\x00", b"\x10\x01\x00\x02", b"\x10\x00\x00\x00"],
    ids=["version", "short-length", "zero-length"],
)
@pytest.mark.parametrize(
    "state", [State.SERVER_CONNECT_REQUEST_PENDING, State.SERVER_CALL_CONNECTED]
)
def test_bad_framing_closes_without_sending(state: State, data: bytes) -> None:
    s, _ = server_in(state)
    s.receive_data(data, 1.0)
    assert s.closed and s.data_to_send() == b""
    assert "framing" in closed_event(s.pop_events()).reason


def test_bad_framing_in_http_leftover() -> None:
    s = server()
    s.receive_data(REQUEST + b"\x20\x01\x00\x08", 0.0)
    assert s.closed
    assert s.data_to_send().startswith(b"HTTP/1.1 200")  # the 200 was already queued


def test_receive_packet_matches_receive_data() -> None:
    s, nonce = server_in(State.SERVER_CALL_CONNECTED_PENDING)
    s.set_hlak(HLAK, 0.0)
    s.receive_packet(True, call_connected(nonce)[4:], 1.0)
    s.receive_packet(False, IP, 1.0)
    s.receive_packet(True, ctl(MessageType.ECHO_REQUEST)[4:], 1.0)
    assert s.pop_events() == [CallConnected(HashProtocol.SHA256), PppFrameReceived(IP)]
    assert packets(s.data_to_send()) == [ControlMessage(MessageType.ECHO_RESPONSE)]
    with pytest.raises(RuntimeError):
        server().receive_packet(True, b"", 0.0)


def test_send_ppp_gated_by_state() -> None:
    s, _ = server_in(State.SERVER_CONNECT_REQUEST_PENDING)
    s.send_ppp(LCP)
    assert s.data_to_send() == b""
    s.receive_data(CONNECT_REQUEST, 0.0)
    s.data_to_send()
    s.send_ppp(LCP)
    assert s.data_to_send() == encode_data(LCP)


def test_input_ignored_after_close() -> None:
    s, _ = server_in(State.SERVER_CALL_CONNECTED)
    s.receive_data(b"\x20\x00\x00\x00", 0.0)
    s.pop_events()
    s.receive_data(ctl(MessageType.ECHO_REQUEST), 1.0)
    s.handle_timer(1000.0)
    s.disconnect(1.0)
    s.abort(Status.NEGOTIATION_TIMEOUT, 1.0)
    s.set_hlak(HLAK, 1.0)
    s.send_ppp(IP)
    assert s.data_to_send() == b"" and s.pop_events() == [] and s.get_timer() is None


# -- client side ------------------------------------------------------------------------


def client_after_http(**kw: object) -> SstpClientConnection:
    c = client(0.0, **kw)
    c.start(0.0)
    assert c.data_to_send().startswith(b"SSTP_DUPLEX_POST ")
    c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", 0.0)
    assert c.data_to_send() == CONNECT_REQUEST
    c.pop_events()
    return c


def test_client_generates_guid_correlation_id() -> None:
    cid = client().correlation_id
    assert len(cid) == 38 and cid[0] == "{" and cid[15] == "4"
    assert client(correlation_id="abc").correlation_id == "abc"


def test_client_http_rejected_and_timeout() -> None:
    c = client()
    c.start(0.0)
    c.receive_data(b"HTTP/1.1 404 Not Found\r\n\r\n", 1.0)
    events = c.pop_events()
    assert events[0] == RequestRejected(404, "HTTP 404") and c.closed
    c = client()
    c.start(0.0)
    c.handle_timer(60.0)
    assert c.closed


def test_client_nak_resend_then_abort() -> None:
    c = client_after_http()
    nak = ctl(MessageType.CALL_CONNECT_NAK, StatusInfo(1, 4, b"\x00\x01"))
    for i in range(3):
        c.receive_data(nak, float(i))
        assert c.data_to_send() == CONNECT_REQUEST
        assert c.get_timer() == float(i) + 60.0
    c.receive_data(nak, 5.0)
    assert packets(c.data_to_send()) == [abort_msg(2, Status.RETRY_COUNT_EXCEEDED)]


def test_client_rejects_unusable_ack() -> None:
    c = client_after_http()
    c.receive_data(ctl(MessageType.CALL_CONNECT_ACK, CryptoBindingRequest(4, bytes(32))), 1.0)
    assert packets(c.data_to_send()) == [abort_msg(4, Status.VALUE_NOT_SUPPORTED)]


@pytest.mark.parametrize(
    ("offered", "preference", "chosen"),
    [
        (3, HashProtocol.SHA256, HashProtocol.SHA256),
        (1, HashProtocol.SHA256, HashProtocol.SHA1),
        (3, HashProtocol.SHA1, HashProtocol.SHA1),
        (2, HashProtocol.SHA1, HashProtocol.SHA256),
    ],
)
def test_client_hash_choice(offered: int, preference: HashProtocol, chosen: HashProtocol) -> None:
    c = client_after_http(hash_preference=preference)
    nonce = bytes(range(32))
    c.receive_data(ctl(MessageType.CALL_CONNECT_ACK, CryptoBindingRequest(offered, nonce)), 1.0)
    assert c.pop_events() == [CallConnectAcked(offered, nonce)]
    assert c.get_timer() == 61.0
    c.send_call_connected(HLAK, CERT, 2.0)
    assert c.data_to_send() == call_connected(nonce, chosen)
    assert c.pop_events() == [CallConnected(chosen)]
    assert c.get_timer() == 62.0  # hello timer


def test_client_hello_echo_and_abort_from_server() -> None:
    c = client_after_http()
    c.receive_data(ctl(MessageType.CALL_CONNECT_ACK, CryptoBindingRequest(3, bytes(32))), 0.0)
    c.send_call_connected(HLAK, CERT, 0.0)
    c.data_to_send()
    c.receive_data(ctl(MessageType.ECHO_REQUEST), 10.0)
    assert packets(c.data_to_send()) == [ControlMessage(MessageType.ECHO_RESPONSE)]
    c.handle_timer(70.0)
    assert packets(c.data_to_send()) == [ControlMessage(MessageType.ECHO_REQUEST)]
    c.receive_data(ctl(MessageType.CALL_ABORT, StatusInfo(3, 4)), 71.0)
    assert packets(c.data_to_send()) == [ControlMessage(MessageType.CALL_ABORT)]
    c.handle_timer(72.0)
    assert closed_event(c.pop_events()).status == 4


def test_client_negotiation_timeouts() -> None:
    c = client_after_http()
    c.handle_timer(60.0)
    assert packets(c.data_to_send()) == [abort_msg(0, Status.NEGOTIATION_TIMEOUT)]
    c = client_after_http()
    c.receive_data(ctl(MessageType.CALL_CONNECT_ACK, CryptoBindingRequest(3, bytes(32))), 10.0)
    c.handle_timer(70.0)
    assert packets(c.data_to_send()) == [abort_msg(0, Status.NEGOTIATION_TIMEOUT)]


def test_client_data_before_ack_is_a_violation() -> None:
    c = client_after_http()
    c.receive_data(encode_data(LCP), 1.0)
    assert packets(c.data_to_send()) == [abort_msg(0, Status.UNACCEPTED_FRAME_RECEIVED)]


def test_decode_round_trip_of_sent_call_connected() -> None:
    msg = decode_control(call_connected(bytes(32))[4:])
    assert isinstance(msg.attributes[0], CryptoBinding)


@pytest.mark.parametrize(
    ("cls", "table"),
    [(SstpServerConnection, SERVER_TRANSITIONS), (SstpClientConnection, CLIENT_TRANSITIONS)],
    ids=["server", "client"],
)
def test_tables_hold_the_methods_the_class_dispatches_to(cls: type, table: Transitions) -> None:
    """The tables hold functions, not names: each is the method of that name on the role's
    class (a subclass overriding a handler would otherwise be bypassed silently), and every
    state with a timer deadline has a timer action."""
    assert cls.TRANSITIONS is table
    for (state, msg_type), handler in table.items():
        assert isinstance(state, State) and isinstance(msg_type, MessageType)
        assert handler.__name__.startswith("_on_"), handler
        assert getattr(cls, handler.__name__) is handler, (state, msg_type, handler)
    for state, action in TIMER_ACTIONS.items():
        assert getattr(cls, action.__name__) is action, (state, action)
    timed = set(TIMER_ACTIONS)
    assert timed >= TEARDOWN_STATES and State.HTTP_PENDING in timed
    assert cls.CONNECTED_STATE in timed and timed >= set(cls.ACTIVE_STATES)
