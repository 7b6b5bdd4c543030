"""SSTP connection state machines, sans-I/O: ``SstpServerConnection`` and ``SstpClientConnection``.

Theory of operation
===================

Section numbers refer to [MS-SSTP] v20240423; docs/protocol/sstp.md §4/§5 summarises them.

One object per TLS connection. The I/O layer feeds the decrypted byte stream to
``receive_data(data, now)`` (or, once ``http_done``, already framed packets to
``receive_packet``), calls ``handle_timer(now)`` when ``get_timer()`` (an absolute deadline)
passes, and after every call writes ``data_to_send()`` and handles ``pop_events()``. Nothing
here reads a clock or does I/O; randomness (the Call Connect Ack nonce, the client's
correlation GUID) comes from the ``random`` callable.

Phases
------
1. HTTP (§3.2.4.1, §4.1): the server waits ``timeouts.http`` for the SSTP_DUPLEX_POST request
   and answers 200 (``RequestAccepted``) or an HTTP error (``RequestRejected`` +
   ``ConnectionClosed``). Bytes after the header block are already SSTP.
2. Call establishment, server (§3.3.1.1.1, §3.3.5.2.2-3)::

       Server_Connect_Request_Pending --Call Connect Request ok--> Ack (fresh nonce),
           Server_Call_Connected_Pending     [CallConnectRequested: start PPP]
       Server_Call_Connected_Pending --Call Connected verified--> Server_Call_Connected
                                                                  [CallConnected]

   A bad Connect Request is NAKed with one Status Info per offending attribute (§3.3.5.2.2);
   the fourth bad one aborts with RETRY_COUNT_EXCEEDED. Each pending state has a negotiation
   timer (§3.3.2.1, 60 s); expiry aborts with NEGOTIATION_TIMEOUT. The Call Connected may
   arrive before PPP has handed over the HLAK (``set_hlak``); it is then kept and verified when
   the key arrives (docs/protocol/sstp.md §6.4). PPP data packets arrive as ``PppFrameReceived``
   from Call_Connected_Pending on; the session layer drops PPP *data* frames until
   ``CallConnected`` (§3.3.5.2.3, note <17>).
   Client (§3.2.1.1.1, §3.2.5.3.2-3): Connect_Request_Sent --Ack--> Connect_Ack_Received
   [CallConnectAcked] --``send_call_connected``--> Client_Call_Connected [CallConnected].
3. Keep-alive (§3.1.2.3, §3.1.6.3), Call_Connected only: the hello timer restarts on every
   received packet (``touch`` for fast-path packets). On expiry send Echo Request; if nothing
   at all arrives within the next interval, close without sending Call Abort.
4. Teardown (§3.1.1.1, §3.3.5.2.4-6). The In_Progress states are transient (send, start a
   timer, move on) and are not represented::

       local abort  -> Call Abort + Status Info, ABORT_TIMER_1  -> Call_Abort_Pending
       Call_Abort_Pending + Call Abort -> ABORT_TIMER_2          -> Call_Abort_Timeout_Pending
       Call Abort received (else) -> Call Abort, ABORT_TIMER_2   -> Call_Abort_Timeout_Pending
       local disconnect -> Call Disconnect, DISCONNECT_TIMER_1   -> Call_Disconnect_Ack_Pending
       Call Disconnect received -> Disconnect Ack, DISCONNECT_TIMER_2
                                                                 -> Call_Disconnect_Timeout_Pending
       Disconnect Ack in Call_Disconnect_Ack_Pending, or any teardown timer -> closed

Rules applied to every received packet (the tables below are the whole state machine):

* a framing error (bad version, length < 4) closes at once, sending nothing (§3.1.5.1);
* ``(state, message type)`` found in the role's ``TRANSITIONS`` table -> that handler;
* otherwise, in the four teardown-pending states the message is ignored; in any other state
  the connection aborts with UNACCEPTED_FRAME_RECEIVED (INVALID_FRAME_RECEIVED when the body
  does not decode or the type is unknown) (§3.3.5.2.x "Else if CurrentState has any other
  value");
* data packets are delivered in the role's ``DATA_STATES``, ignored during teardown and abort
  the call anywhere else.

``ConnectionClosed`` is emitted exactly once and is terminal: the I/O layer writes the last
``data_to_send()`` and closes the transport; later input is ignored. ``receive_*`` never
raise on peer input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sstpd.errors import CryptoBindingError, HttpError, ParseError
from sstpd.proto.outcome import Outcome
from sstpd.proto.sstp.binding import build_call_connected, normalize_hlak, verify_call_connected
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
    status_name,
)
from sstpd.proto.sstp.http import (
    RequestParser,
    ResponseParser,
    build_error_response,
    build_ok_response,
    build_request,
)
from sstpd.proto.sstp.packets import (
    HEADER,
    ControlMessage,
    CryptoBinding,
    CryptoBindingRequest,
    EncapsulatedProtocolId,
    PacketReader,
    StatusInfo,
    UnknownAttribute,
    decode_control,
    encode_attribute,
    encode_control,
    encode_data,
)

#: Bad Call Connect Requests answered with a NAK before aborting (Windows uses 3, note <16>);
#: also the client's resend limit after NAKs (note <10>).
MAX_RETRIES = 3
_BOTH = HashProtocol.SHA1 | HashProtocol.SHA256
_ABORTED, _BINDING_FAILED = Outcome.ABORTED, Outcome.BINDING_FAILED
# A NAK must fit one packet: 8 bytes of headers + at most 76 bytes per Status Info.
_MAX_NAK_STATUS = (MAX_PACKET_SIZE - 8) // (12 + MAX_STATUS_VALUE)


@dataclass(frozen=True)
class Timeouts:
    """Timer values in seconds (§3.1.2, §3.2.2.1, §3.3.2.1, §4.1)."""

    http: float = 60.0
    negotiation: float = 60.0
    hello: float = 60.0
    abort1: float = 3.0
    abort2: float = 1.0
    disconnect1: float = 5.0
    disconnect2: float = 1.0


@dataclass(frozen=True)
class RequestAccepted:
    """HTTP phase done: server answered (or client received) 200."""

    correlation_id: str | None
    host: str | None


@dataclass(frozen=True)
class RequestRejected:
    """HTTP phase refused with ``status`` (server: sent; client: received)."""

    status: int
    reason: str


@dataclass(frozen=True)
class CallConnectRequested:
    """Server: a valid Call Connect Request was acked; start PPP (Lower Link Up)."""


@dataclass(frozen=True)
class PppFrameReceived:
    frame: bytes


@dataclass(frozen=True)
class CallConnected:
    """Server: crypto binding verified. Client: Call Connected sent. PPP data may flow."""

    hash_protocol: HashProtocol


@dataclass(frozen=True)
class CallConnectAcked:
    """Client: Call Connect Ack received; start PPP."""

    hash_protocols: int
    nonce: bytes


@dataclass(frozen=True)
class ConnectionClosed:
    """Terminal. ``status`` is the SSTP Status that ended the call, when there was one;
    ``outcome`` what it means for a call that never opened (a timer, the binding, ...)."""

    reason: str
    status: int | None
    graceful: bool
    outcome: Outcome = Outcome.ABORTED


Event = (
    RequestAccepted
    | RequestRejected
    | CallConnectRequested
    | PppFrameReceived
    | CallConnected
    | CallConnectAcked
    | ConnectionClosed
)


@enum.unique
class State(enum.IntEnum):
    """§3.1.1.1, §3.2.1.1.1, §3.3.1.1.1; HTTP_PENDING is the HTTP phase before them."""

    CALL_DISCONNECTED = 0
    HTTP_PENDING = 1
    SERVER_CONNECT_REQUEST_PENDING = 2
    SERVER_CALL_CONNECTED_PENDING = 3
    SERVER_CALL_CONNECTED = 4
    CLIENT_CONNECT_REQUEST_SENT = 5
    CLIENT_CONNECT_ACK_RECEIVED = 6
    CLIENT_CALL_CONNECTED = 7
    CALL_ABORT_PENDING = 8
    CALL_ABORT_TIMEOUT_PENDING = 9
    CALL_DISCONNECT_ACK_PENDING = 10
    CALL_DISCONNECT_TIMEOUT_PENDING = 11


#: Unexpected messages are ignored here instead of aborting.
TEARDOWN_STATES = frozenset(
    {
        State.CALL_ABORT_PENDING,
        State.CALL_ABORT_TIMEOUT_PENDING,
        State.CALL_DISCONNECT_ACK_PENDING,
        State.CALL_DISCONNECT_TIMEOUT_PENDING,
    }
)

#: A handler of a received control message: ``handler(connection, msg, payload, now)``.
Handler = Callable[[Any, ControlMessage, bytes, float], None]
#: What an expired timer does: ``action(connection, now)``.
TimerAction = Callable[[Any, float], None]
Transitions = dict[tuple[State, MessageType], Handler]

_SERVER_ACTIVE = (
    State.SERVER_CONNECT_REQUEST_PENDING,
    State.SERVER_CALL_CONNECTED_PENDING,
    State.SERVER_CALL_CONNECTED,
)
_CLIENT_ACTIVE = (
    State.CLIENT_CONNECT_REQUEST_SENT,
    State.CLIENT_CONNECT_ACK_RECEIVED,
    State.CLIENT_CALL_CONNECTED,
)
# The tables (SERVER_TRANSITIONS, CLIENT_TRANSITIONS, TIMER_ACTIONS) are at the end of this
# module: they hold the handler functions themselves, so they follow the classes.


def _status_of(msg: ControlMessage) -> int | None:
    for attr in msg.attributes:
        if isinstance(attr, StatusInfo):
            return attr.status
    return None


class _SstpConnection:
    """Everything both roles share: output, events, framing, timers, teardown."""

    TRANSITIONS: ClassVar[Transitions]  # set below the class bodies, with the tables
    DATA_STATES: ClassVar[frozenset[State]]
    ACTIVE_STATES: ClassVar[frozenset[State]]
    CONNECTED_STATE: ClassVar[State]

    def __init__(self, *, random: Callable[[int], bytes], now: float, timeouts: Timeouts) -> None:
        self._random = random
        self._timeouts = timeouts
        self._state = State.CALL_DISCONNECTED
        self._closed = False
        self._http_done = False
        self._out = bytearray()
        self._events: list[Event] = []
        self._reader = PacketReader()
        self._deadline: float | None = None
        self._last_rx = now
        self._rx_seen = False  # a packet arrived since the last Echo Request we sent
        self._echo_sent_at: float | None = None
        # what ends the call when the teardown finishes: ConnectionClosed's fields
        self._end: tuple[str, int | None, bool, Outcome] = ("closed", None, False, _ABORTED)
        self._hash_protocol: HashProtocol | None = None

    # -- properties and outputs --------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def http_done(self) -> bool:
        return self._http_done

    @property
    def is_call_connected(self) -> bool:
        return self._state is self.CONNECTED_STATE

    @property
    def hash_protocol(self) -> HashProtocol | None:
        return self._hash_protocol

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """Absolute time at which ``handle_timer`` must be called, or ``None``."""
        if self._closed:
            return None
        if self._state is self.CONNECTED_STATE:
            if self._echo_sent_at is not None and not self._rx_seen:
                return self._echo_sent_at + self._timeouts.hello
            return self._last_rx + self._timeouts.hello
        return self._deadline

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        TIMER_ACTIONS[self._state](self, now)

    # -- inputs ---------------------------------------------------------------------------

    def touch(self, now: float) -> None:
        """Bytes arrived (fast path): restarts the hello timer lazily, nothing else."""
        self._last_rx = now
        self._rx_seen = True

    def receive_packet(self, is_control: bool, payload: bytes, now: float) -> None:
        """One already framed packet; ``payload`` is the bytes after the 4-byte header."""
        if self._closed:
            return
        if not self._http_done:
            raise RuntimeError("receive_packet() before the HTTP phase is done")
        self._handle_packet(is_control, payload, now)

    def send_ppp(self, frame: bytes) -> None:
        """Queue one PPP frame as a data packet; dropped outside the states carrying PPP."""
        if self._state in self.DATA_STATES and not self._closed:
            self._out += encode_data(frame)

    def disconnect(self, now: float) -> None:
        """Graceful teardown (§3.2.4.2): Call Disconnect, then wait for the ack."""
        if self._closed or self._state in TEARDOWN_STATES:
            return
        if self._state not in self.ACTIVE_STATES:
            self._close("disconnected locally", None, True)
            return
        self._send(MessageType.CALL_DISCONNECT, StatusInfo(AttributeId.NO_ERROR, Status.NO_ERROR))
        self._end = ("disconnected locally", None, True, _ABORTED)
        self._enter(State.CALL_DISCONNECT_ACK_PENDING, now + self._timeouts.disconnect1)

    def abort(
        self, status: Status, now: float, *, attrib_id: int = AttributeId.NO_ERROR
    ) -> None:
        """Call Abort with one Status Info (§3.1.5.1)."""
        if self._closed or self._state in TEARDOWN_STATES:
            return
        if self._state not in self.ACTIVE_STATES:
            self._close(f"aborted locally: {status_name(status)}", int(status), False)
            return
        self._start_abort(status, attrib_id, f"aborted locally: {status_name(status)}", now)

    def connection_lost(self) -> None:
        """The transport went away: clean up, nothing to send (§3.1.7.2)."""
        if self._state in TEARDOWN_STATES:
            self._close(*self._end)
        else:
            self._close("connection lost", None, False)

    # -- internals --------------------------------------------------------------------------

    def _send(self, msg_type: MessageType, *attributes: StatusInfo | CryptoBindingRequest) -> None:
        self._out += encode_control(ControlMessage(msg_type, attributes))

    def _enter(self, state: State, deadline: float | None) -> None:
        self._state = state
        self._deadline = deadline

    def _enter_connected(self, now: float) -> None:
        self._enter(self.CONNECTED_STATE, None)
        self._last_rx = now
        self._echo_sent_at = None

    def _close(
        self, reason: str, status: int | None, graceful: bool, outcome: Outcome = _ABORTED
    ) -> None:
        if self._closed:
            return
        self._closed = True
        self._enter(State.CALL_DISCONNECTED, None)
        self._events.append(ConnectionClosed(reason, status, graceful, outcome))

    def _start_abort(
        self, status: Status, attrib_id: int, reason: str, now: float, outcome: Outcome = _ABORTED
    ) -> None:
        self._send(MessageType.CALL_ABORT, StatusInfo(attrib_id, status))
        self._end = (reason, int(status), False, outcome)
        self._enter(State.CALL_ABORT_PENDING, now + self._timeouts.abort1)

    def _receive_stream(self, data: bytes, now: float) -> None:
        self._reader.feed(data)
        while not self._closed:
            try:
                packet = self._reader.next_packet()
            except ParseError as exc:  # §3.1.5.1: drop without sending anything
                self._close(f"SSTP framing error: {exc}", None, False)
                return
            if packet is None:
                return
            self._handle_packet(packet[0], packet[1], now)

    def _handle_packet(self, is_control: bool, payload: bytes, now: float) -> None:
        self._last_rx = now
        self._rx_seen = True
        state = self._state
        if not is_control:
            if state in self.DATA_STATES:
                self._events.append(PppFrameReceived(payload))
            elif state not in TEARDOWN_STATES:
                self._start_abort(
                    Status.UNACCEPTED_FRAME_RECEIVED,
                    AttributeId.NO_ERROR,
                    f"data packet in {state.name}",
                    now,
                )
            return
        try:
            msg = decode_control(payload)
        except ParseError as exc:
            if state not in TEARDOWN_STATES:
                reason = f"undecodable control message: {exc}"
                self._start_abort(Status.INVALID_FRAME_RECEIVED, AttributeId.NO_ERROR, reason, now)
            return
        if not isinstance(msg.type, MessageType):
            if state not in TEARDOWN_STATES:
                reason = f"unknown control message type 0x{msg.type:04x}"
                self._start_abort(Status.INVALID_FRAME_RECEIVED, AttributeId.NO_ERROR, reason, now)
            return
        handler = self.TRANSITIONS.get((state, msg.type))
        if handler is not None:
            handler(self, msg, payload, now)
        elif state not in TEARDOWN_STATES:
            reason = f"unexpected {msg.type.name} in {state.name}"
            self._start_abort(Status.UNACCEPTED_FRAME_RECEIVED, AttributeId.NO_ERROR, reason, now)

    # -- handlers named in the tables ---------------------------------------------------

    def _on_echo_request(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        self._send(MessageType.ECHO_RESPONSE)

    def _on_echo_response(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        pass  # receiving it already restarted the hello timer

    def _on_peer_abort(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        status = _status_of(msg)
        what = "" if status is None else f": {status_name(status)}"
        self._send(MessageType.CALL_ABORT)
        self._end = (f"peer aborted the call{what}", status, False, _ABORTED)
        self._enter(State.CALL_ABORT_TIMEOUT_PENDING, now + self._timeouts.abort2)

    def _on_abort_confirmed(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        self._enter(State.CALL_ABORT_TIMEOUT_PENDING, now + self._timeouts.abort2)

    def _on_peer_disconnect(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        self._send(MessageType.CALL_DISCONNECT_ACK)
        if self._state is not State.CALL_DISCONNECT_ACK_PENDING:
            self._end = ("peer disconnected", _status_of(msg), True, _ABORTED)
        self._enter(State.CALL_DISCONNECT_TIMEOUT_PENDING, now + self._timeouts.disconnect2)

    def _on_disconnect_ack(self, msg: ControlMessage, payload: bytes, now: float) -> None:
        self._close(*self._end)

    def _on_http_timeout(self, now: float) -> None:
        self._close("HTTP phase timed out", None, False, Outcome.TIMEOUT)

    def _on_negotiation_timeout(self, now: float) -> None:
        reason = f"negotiation timed out in {self._state.name}"
        status = Status.NEGOTIATION_TIMEOUT
        self._start_abort(status, AttributeId.NO_ERROR, reason, now, Outcome.TIMEOUT)

    def _on_hello_timeout(self, now: float) -> None:
        if self._echo_sent_at is not None and not self._rx_seen:
            # §3.1.2.3: no answer within an interval after the Echo Request -> no Call Abort.
            self._close("peer silent: no reply to Echo Request", None, False)
            return
        self._send(MessageType.ECHO_REQUEST)
        self._echo_sent_at = now
        self._rx_seen = False

    def _on_teardown_timeout(self, now: float) -> None:
        self._close(*self._end)


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


class SstpServerConnection(_SstpConnection):
    """Server side of one SSTP connection (see the module docstring)."""

    DATA_STATES = frozenset({State.SERVER_CALL_CONNECTED_PENDING, State.SERVER_CALL_CONNECTED})
    ACTIVE_STATES = frozenset(_SERVER_ACTIVE)
    CONNECTED_STATE = State.SERVER_CALL_CONNECTED

    def __init__(
        self,
        *,
        cert_hashes: Mapping[HashProtocol, bytes],
        hash_protocols: int = _BOTH,
        random: Callable[[int], bytes],
        now: float,
        timeouts: Timeouts = Timeouts(),
        server_name: str = "sstpd",
    ) -> None:
        super().__init__(random=random, now=now, timeouts=timeouts)
        self._cert_hashes = dict(cert_hashes)
        # Offer only what we can verify: a protocol needs a certificate hash.
        self._offered = int(hash_protocols) & sum(int(p) for p in self._cert_hashes if p in _BOTH)
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


def _guid(raw: bytes) -> str:
    """A random (version 4) GUID in the {8-4-4-4-12} upper-case form."""
    b = bytearray(raw[:16].ljust(16, b"\0"))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex().upper()
    return f"{{{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}}}"


class SstpClientConnection(_SstpConnection):
    """Client side of one SSTP connection (see the module docstring)."""

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
        order = (self._preference, _BOTH & ~self._preference)
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
        if not isinstance(request, CryptoBindingRequest) or not request.hash_protocols & _BOTH:
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


# ---------------------------------------------------------------------------------------
# The tables: the whole state machine as data, naming the handlers above.


def _teardown_rows(active: tuple[State, ...], connected: State) -> Transitions:
    """Rows shared by both roles: Abort/Disconnect handling (§3.3.5.2.4-6) and echo."""
    c = _SstpConnection
    rows: Transitions = {
        (connected, MessageType.ECHO_REQUEST): c._on_echo_request,
        (connected, MessageType.ECHO_RESPONSE): c._on_echo_response,
        (State.CALL_ABORT_PENDING, MessageType.CALL_ABORT): c._on_abort_confirmed,
        (State.CALL_DISCONNECT_ACK_PENDING, MessageType.CALL_DISCONNECT_ACK): c._on_disconnect_ack,
    }
    for state in (*active, State.CALL_DISCONNECT_ACK_PENDING):
        rows[state, MessageType.CALL_ABORT] = c._on_peer_abort
        rows[state, MessageType.CALL_DISCONNECT] = c._on_peer_disconnect
    return rows


_S, _C, _M = SstpServerConnection, SstpClientConnection, MessageType
SERVER_TRANSITIONS: Transitions = {
    (State.SERVER_CONNECT_REQUEST_PENDING, _M.CALL_CONNECT_REQUEST): _S._on_connect_request,
    (State.SERVER_CALL_CONNECTED_PENDING, _M.CALL_CONNECTED): _S._on_call_connected,
    **_teardown_rows(_SERVER_ACTIVE, State.SERVER_CALL_CONNECTED),
}
CLIENT_TRANSITIONS: Transitions = {
    (State.CLIENT_CONNECT_REQUEST_SENT, _M.CALL_CONNECT_ACK): _C._on_connect_ack,
    (State.CLIENT_CONNECT_REQUEST_SENT, _M.CALL_CONNECT_NAK): _C._on_connect_nak,
    **_teardown_rows(_CLIENT_ACTIVE, State.CLIENT_CALL_CONNECTED),
}
SstpServerConnection.TRANSITIONS = SERVER_TRANSITIONS
SstpClientConnection.TRANSITIONS = CLIENT_TRANSITIONS

#: What an expired timer does, per state (the connected states run the hello timer).
TIMER_ACTIONS: dict[State, TimerAction] = {
    State.HTTP_PENDING: _SstpConnection._on_http_timeout,
    State.SERVER_CONNECT_REQUEST_PENDING: _SstpConnection._on_negotiation_timeout,
    State.SERVER_CALL_CONNECTED_PENDING: _SstpConnection._on_negotiation_timeout,
    State.CLIENT_CONNECT_REQUEST_SENT: _SstpConnection._on_negotiation_timeout,
    State.CLIENT_CONNECT_ACK_RECEIVED: _SstpConnection._on_negotiation_timeout,
    State.SERVER_CALL_CONNECTED: _SstpConnection._on_hello_timeout,
    State.CLIENT_CALL_CONNECTED: _SstpConnection._on_hello_timeout,
    **dict.fromkeys(TEARDOWN_STATES, _SstpConnection._on_teardown_timeout),
}
del _S, _C, _M
