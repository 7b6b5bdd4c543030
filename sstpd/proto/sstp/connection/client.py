"""``SstpClientConnection``: the client side (the HTTP request, Call Connect Request and
its resends, Call Connected) and ``CLIENT_TRANSITIONS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sstpd.errors import ParseError
from sstpd.proto.outcome import Outcome
from sstpd.proto.sstp.binding import build_call_connected
from sstpd.proto.sstp.connection.base import BOTH, MAX_RETRIES, SstpConnection, teardown_rows
from sstpd.proto.sstp.connection.events import (
    CallConnectAcked,
    CallConnected,
    RequestAccepted,
    RequestRejected,
    State,
    Timeouts,
    Transitions,
)
from sstpd.proto.sstp.constants import (
    ENCAPSULATED_PROTOCOL_PPP,
    AttributeId,
    HashProtocol,
    MessageType,
    Status,
)
from sstpd.proto.sstp.http import ResponseParser, build_request
from sstpd.proto.sstp.packets import (
    ControlMessage,
    CryptoBindingRequest,
    EncapsulatedProtocolId,
    encode_control,
)

_BINDING_FAILED = Outcome.BINDING_FAILED
_CLIENT_ACTIVE = (
    State.CLIENT_CONNECT_REQUEST_SENT,
    State.CLIENT_CONNECT_ACK_RECEIVED,
    State.CLIENT_CALL_CONNECTED,
)


def _guid(raw: bytes) -> str:
    """A random (version 4) GUID in the {8-4-4-4-12} upper-case form."""
    b = bytearray(raw[:16].ljust(16, b"\0"))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex().upper()
    return f"{{{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}}}"


class SstpClientConnection(SstpConnection):
    """Client side of one SSTP connection (see the package docstring)."""

    DATA_STATES = frozenset({State.CLIENT_CONNECT_ACK_RECEIVED, State.CLIENT_CALL_CONNECTED})
    ACTIVE_STATES = frozenset(_CLIENT_ACTIVE)
    CONNECTED_STATE = State.CLIENT_CALL_CONNECTED

    def __init__(
        self,
        *,
        host: str,
        correlation_id: str | None = None,
        random: Callable[[int], bytes],
        now: float,
        timeouts: Timeouts = Timeouts(),
        hash_preference: HashProtocol = HashProtocol.SHA256,
    ) -> None:
        super().__init__(random=random, now=now, timeouts=timeouts)
        self._host = host
        self._correlation_id = correlation_id if correlation_id is not None else _guid(random(16))
        self._preference = hash_preference
        self._http = ResponseParser()
        self._naks = 0
        self._nonce = b""
        self._offered = 0

    @property
    def correlation_id(self) -> str:
        return self._correlation_id

    def start(self, now: float) -> None:
        """Queue the HTTP request and wait for the response."""
        if self._state is not State.CALL_DISCONNECTED or self._closed:
            raise RuntimeError("start() called twice")
        self._out += build_request(self._host, self._correlation_id)
        self._enter(State.HTTP_PENDING, now + self._timeouts.http)

    def receive_data(self, data: bytes, now: float) -> None:
        if self._closed or self._state is State.CALL_DISCONNECTED:
            return
        if not self._http_done:
            try:
                status = self._http.feed(data)
            except ParseError as exc:
                self._close(f"bad HTTP response: {exc}", None, False)
                return
            if status is None:
                return
            if status != 200:
                self._events.append(RequestRejected(status, f"HTTP {status}"))
                self._close(f"server refused the HTTP request: {status}", None, False)
                return
            self._http_done = True
            self._events.append(RequestAccepted(self._correlation_id, self._host))
            self._send_connect_request(now)
            data = self._http.leftover
            if not data:
                return
        self._receive_stream(data, now)

    def send_call_connected(
        self, hlak: bytes, cert_hashes: Mapping[HashProtocol, bytes], now: float
    ) -> None:
        """PPP authentication done: send Call Connected (§3.2.5.2). No-op in other states."""
        if self._closed or self._state is not State.CLIENT_CONNECT_ACK_RECEIVED:
            return
        order = (self._preference, BOTH & ~self._preference)
        usable = [p for p in order if p & self._offered and p in cert_hashes]
        if not usable:
            reason = "no offered hash protocol has a certificate hash"
            attrib = AttributeId.CRYPTO_BINDING_REQ
            self._start_abort(Status.VALUE_NOT_SUPPORTED, attrib, reason, now)
            return
        proto = usable[0]
        self._out += build_call_connected(
            hash_protocol=proto, nonce=self._nonce, cert_hash=cert_hashes[proto], hlak=hlak
        )
        self._hash_protocol = proto
        self._enter_connected(now)
        self._events.append(CallConnected(proto))

    def _send_connect_request(self, now: float) -> None:
        attr = EncapsulatedProtocolId(ENCAPSULATED_PROTOCOL_PPP)
        self._out += encode_control(ControlMessage(MessageType.CALL_CONNECT_REQUEST, (attr,)))
        self._enter(State.CLIENT_CONNECT_REQUEST_SENT, now + self._timeouts.negotiation)

    def _on_connect_ack(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        attrs = msg.attributes
        request = attrs[0] if len(attrs) == 1 else None
        if not isinstance(request, CryptoBindingRequest) or not request.hash_protocols & BOTH:
            reason = "Call Connect Ack without a usable Crypto Binding Request"
            attrib = AttributeId.CRYPTO_BINDING_REQ
            self._start_abort(Status.VALUE_NOT_SUPPORTED, attrib, reason, now, _BINDING_FAILED)
            return
        self._nonce, self._offered = request.nonce, request.hash_protocols
        self._events.append(CallConnectAcked(request.hash_protocols, request.nonce))
        self._enter(State.CLIENT_CONNECT_ACK_RECEIVED, now + self._timeouts.negotiation)

    def _on_connect_nak(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        self._naks += 1
        if self._naks > MAX_RETRIES:
            reason = "Call Connect Request NAKed too often"
            self._start_abort(Status.RETRY_COUNT_EXCEEDED, AttributeId.STATUS_INFO, reason, now)
            return
        self._send_connect_request(now)


_C, _M = SstpClientConnection, MessageType
CLIENT_TRANSITIONS: Transitions = {
    (State.CLIENT_CONNECT_REQUEST_SENT, _M.CALL_CONNECT_ACK): _C._on_connect_ack,
    (State.CLIENT_CONNECT_REQUEST_SENT, _M.CALL_CONNECT_NAK): _C._on_connect_nak,
    **teardown_rows(_CLIENT_ACTIVE, State.CLIENT_CALL_CONNECTED),
}
SstpClientConnection.TRANSITIONS = CLIENT_TRANSITIONS
del _C, _M
