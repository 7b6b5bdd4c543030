"""``SstpServerConnection``: the server side (the HTTP request, Call Connect Requests and
their NAKs, the Call Connected's crypto binding) and ``SERVER_TRANSITIONS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sstpd.errors import CryptoBindingError, HttpError
from sstpd.proto.outcome import Outcome
from sstpd.proto.sstp.binding import normalize_hlak, verify_call_connected
from sstpd.proto.sstp.connection.base import BOTH, MAX_RETRIES, SstpConnection, teardown_rows
from sstpd.proto.sstp.connection.events import (
    CallConnected,
    CallConnectRequested,
    RequestAccepted,
    RequestRejected,
    State,
    Timeouts,
    Transitions,
)
from sstpd.proto.sstp.constants import (
    ENCAPSULATED_PROTOCOL_PPP,
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    MAX_STATUS_VALUE,
    NONCE_SIZE,
    SSTP_VERSION,
    AttributeId,
    HashProtocol,
    MessageType,
    Status,
)
from sstpd.proto.sstp.http import RequestParser, build_error_response, build_ok_response
from sstpd.proto.sstp.packets import (
    HEADER,
    ControlMessage,
    CryptoBinding,
    CryptoBindingRequest,
    EncapsulatedProtocolId,
    StatusInfo,
    UnknownAttribute,
    encode_attribute,
)

_BINDING_FAILED = Outcome.BINDING_FAILED
# A NAK must fit one packet: 8 bytes of headers + at most 76 bytes per Status Info.
_MAX_NAK_STATUS = (MAX_PACKET_SIZE - 8) // (12 + MAX_STATUS_VALUE)
_SERVER_ACTIVE = (
    State.SERVER_CONNECT_REQUEST_PENDING,
    State.SERVER_CALL_CONNECTED_PENDING,
    State.SERVER_CALL_CONNECTED,
)


def connect_request_problems(msg: ControlMessage) -> list[StatusInfo]:
    """Status Infos for a NAK of ``msg`` per §3.3.5.2.2 (empty: acceptable)."""
    problems: list[StatusInfo] = []
    seen: set[int] = set()
    have_protocol = False
    for attr in msg.attributes:
        raw = encode_attribute(attr)
        attr_id, value = raw[1], raw[4 : 4 + MAX_STATUS_VALUE]
        if isinstance(attr, StatusInfo):
            if attr.status != Status.NO_ERROR:
                status = Status.STATUS_INFO_NOT_SUPPORTED_IN_MSG
                problems.append(StatusInfo(AttributeId.STATUS_INFO, status, value))
            continue
        if attr_id == AttributeId.ENCAPSULATED_PROTOCOL_ID:
            have_protocol = True
        if isinstance(attr, UnknownAttribute):
            known = attr_id in AttributeId.__members__.values() and attr_id != 0
            status = Status.INVALID_ATTRIB_VALUE_LENGTH if known else Status.UNRECOGNIZED_ATTRIBUTE
            problems.append(StatusInfo(attr_id, status, value))
        elif attr_id in seen:
            problems.append(StatusInfo(attr_id, Status.DUPLICATE_ATTRIBUTE, value))
        elif isinstance(attr, EncapsulatedProtocolId):
            if attr.protocol != ENCAPSULATED_PROTOCOL_PPP:
                problems.append(StatusInfo(attr_id, Status.VALUE_NOT_SUPPORTED, value))
        else:  # a crypto binding attribute has no meaning in a Connect Request
            problems.append(StatusInfo(attr_id, Status.UNRECOGNIZED_ATTRIBUTE, value))
        seen.add(attr_id)
    if not have_protocol:
        status = Status.REQUIRED_ATTRIBUTE_MISSING
        problems.append(StatusInfo(AttributeId.STATUS_INFO, status))
    return problems[:_MAX_NAK_STATUS]


class SstpServerConnection(SstpConnection):
    """Server side of one SSTP connection (see the package docstring)."""

    DATA_STATES = frozenset({State.SERVER_CALL_CONNECTED_PENDING, State.SERVER_CALL_CONNECTED})
    ACTIVE_STATES = frozenset(_SERVER_ACTIVE)
    CONNECTED_STATE = State.SERVER_CALL_CONNECTED

    def __init__(
        self,
        *,
        cert_hashes: Mapping[HashProtocol, bytes],
        hash_protocols: int = BOTH,
        random: Callable[[int], bytes],
        now: float,
        timeouts: Timeouts = Timeouts(),
        server_name: str = "sstpd",
    ) -> None:
        super().__init__(random=random, now=now, timeouts=timeouts)
        self._cert_hashes = dict(cert_hashes)
        # Offer only what we can verify: a protocol needs a certificate hash.
        self._offered = int(hash_protocols) & sum(int(p) for p in self._cert_hashes if p in BOTH)
        if not self._offered:
            raise ValueError("no hash protocol with a certificate hash to offer")
        self._server_name = server_name
        self._http = RequestParser()
        self._naks = 0
        self._nonce = b""
        self._hlak: bytes | None = None
        self._call_connected: bytes | None = None  # received, waiting for the HLAK
        self._correlation_id: str | None = None
        self._host: str | None = None
        self._enter(State.HTTP_PENDING, now + timeouts.http)

    @property
    def correlation_id(self) -> str | None:
        return self._correlation_id

    @property
    def host(self) -> str | None:
        return self._host

    def receive_data(self, data: bytes, now: float) -> None:
        """The decrypted TLS stream: the HTTP request, then SSTP packets."""
        if self._closed:
            return
        if not self._http_done:
            try:
                request = self._http.feed(data)
            except HttpError as exc:
                self._out += build_error_response(exc.status, exc.reason)
                self._events.append(RequestRejected(exc.status, exc.reason))
                reason = f"HTTP request refused: {exc.status} {exc.reason}"
                self._close(reason, None, False, Outcome.HTTP_REJECTED)
                return
            if request is None:
                return
            self._http_done = True
            self._correlation_id, self._host = request.correlation_id, request.host
            self._out += build_ok_response(self._server_name)
            self._events.append(RequestAccepted(request.correlation_id, request.host))
            self._enter(State.SERVER_CONNECT_REQUEST_PENDING, now + self._timeouts.negotiation)
            data = self._http.leftover
            if not data:
                return
        self._receive_stream(data, now)

    def set_hlak(self, hlak: bytes, now: float) -> None:
        """PPP authentication finished: verify a waiting Call Connected, or keep the key."""
        if self._closed:
            return
        self._hlak = normalize_hlak(hlak)
        if self._call_connected is not None and self._state is State.SERVER_CALL_CONNECTED_PENDING:
            self._verify(now)

    def _on_connect_request(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        problems = connect_request_problems(msg)
        if not problems:
            self._nonce = self._random(NONCE_SIZE)
            if len(self._nonce) != NONCE_SIZE:
                raise ValueError("random() returned the wrong number of bytes")
            offer = CryptoBindingRequest(self._offered, self._nonce)
            self._send(MessageType.CALL_CONNECT_ACK, offer)
            self._events.append(CallConnectRequested())
            self._enter(State.SERVER_CALL_CONNECTED_PENDING, now + self._timeouts.negotiation)
            return
        self._naks += 1
        if self._naks > MAX_RETRIES:
            reason = "too many unacceptable Call Connect Requests"
            self._start_abort(Status.RETRY_COUNT_EXCEEDED, AttributeId.STATUS_INFO, reason, now)
            return
        self._send(MessageType.CALL_CONNECT_NAK, *problems)

    def _on_call_connected(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        if self._call_connected is not None:
            reason = "second Call Connected"
            self._start_abort(Status.UNACCEPTED_FRAME_RECEIVED, AttributeId.NO_ERROR, reason, now)
            return
        if len(msg.attributes) != 1 or not isinstance(msg.attributes[0], CryptoBinding):
            reason = "Call Connected without a single valid Crypto Binding attribute"
            status = Status.ATTRIB_NOT_SUPPORTED_IN_MSG
            self._start_abort(status, AttributeId.STATUS_INFO, reason, now, _BINDING_FAILED)
            return
        self._call_connected = HEADER.pack(SSTP_VERSION, 1, HEADER_SIZE + len(payload)) + payload
        if self._hlak is not None:
            self._verify(now)

    def _verify(self, now: float) -> None:
        assert self._call_connected is not None and self._hlak is not None
        try:
            proto = verify_call_connected(
                self._call_connected,
                nonce=self._nonce,
                cert_hashes=self._cert_hashes,
                offered=self._offered,
                hlak=self._hlak,
            )
        except CryptoBindingError as exc:
            reason = f"crypto binding failed: {exc}"
            attrib = AttributeId.CRYPTO_BINDING
            self._start_abort(Status.VALUE_NOT_SUPPORTED, attrib, reason, now, _BINDING_FAILED)
            return
        self._hash_protocol = proto
        self._enter_connected(now)
        self._events.append(CallConnected(proto))


_S, _M = SstpServerConnection, MessageType
SERVER_TRANSITIONS: Transitions = {
    (State.SERVER_CONNECT_REQUEST_PENDING, _M.CALL_CONNECT_REQUEST): _S._on_connect_request,
    (State.SERVER_CALL_CONNECTED_PENDING, _M.CALL_CONNECTED): _S._on_call_connected,
    **teardown_rows(_SERVER_ACTIVE, State.SERVER_CALL_CONNECTED),
}
SstpServerConnection.TRANSITIONS = SERVER_TRANSITIONS
del _S, _M
