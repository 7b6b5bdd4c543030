"""``SstpConnection``: everything both roles share (output, events, framing, timers,
teardown), the rows both transition tables share and ``TIMER_ACTIONS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from sstpd.errors import ParseError
from sstpd.proto.outcome import Outcome
from sstpd.proto.sstp.connection.events import (
    TEARDOWN_STATES,
    ConnectionClosed,
    Event,
    PppFrameReceived,
    State,
    Timeouts,
    TimerAction,
    Transitions,
)
from sstpd.proto.sstp.constants import AttributeId, HashProtocol, MessageType, Status, status_name
from sstpd.proto.sstp.packets import (
    ControlMessage,
    CryptoBindingRequest,
    PacketReader,
    StatusInfo,
    decode_control,
    encode_control,
    encode_data,
)

#: Bad Call Connect Requests answered with a NAK before aborting (Windows uses 3, note <16>);
#: also the client's resend limit after NAKs (note <10>).
MAX_RETRIES = 3
BOTH = HashProtocol.SHA1 | HashProtocol.SHA256
_ABORTED = Outcome.ABORTED


def _status_of(msg: ControlMessage) -> int | None:
    for attr in msg.attributes:
        if isinstance(attr, StatusInfo):
            return attr.status
    return None


class SstpConnection:
    """Everything both roles share: output, events, framing, timers, teardown."""

    TRANSITIONS: ClassVar[Transitions]  # set by each role's module, below its class
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


def teardown_rows(active: tuple[State, ...], connected: State) -> Transitions:
    """Rows shared by both roles: Abort/Disconnect handling (§3.3.5.2.4-6) and echo."""
    c = SstpConnection
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


#: What an expired timer does, per state (the connected states run the hello timer).
TIMER_ACTIONS: dict[State, TimerAction] = {
    State.HTTP_PENDING: SstpConnection._on_http_timeout,
    State.SERVER_CONNECT_REQUEST_PENDING: SstpConnection._on_negotiation_timeout,
    State.SERVER_CALL_CONNECTED_PENDING: SstpConnection._on_negotiation_timeout,
    State.CLIENT_CONNECT_REQUEST_SENT: SstpConnection._on_negotiation_timeout,
    State.CLIENT_CONNECT_ACK_RECEIVED: SstpConnection._on_negotiation_timeout,
    State.SERVER_CALL_CONNECTED: SstpConnection._on_hello_timeout,
    State.CLIENT_CALL_CONNECTED: SstpConnection._on_hello_timeout,
    **dict.fromkeys(TEARDOWN_STATES, SstpConnection._on_teardown_timeout),
}
