"""The RFC 1661 automaton's engine: :class:`Fsm`, one per control protocol of a link.

Kept apart from the table (:mod:`.table`, what the RFC says) and the handler contract
(:mod:`.handler`, what each protocol supplies): this module is the mechanism between
them, turning packets and timeouts into events, looking the transition up and running
its actions.

* Received packets are turned into events here: a Configure-Request is RCR+ when the
  handler accepts every option, RCR- otherwise; a Configure-Ack/Nak/Reject whose
  Identifier is not that of our outstanding request (or whose Ack does not repeat our
  options byte for byte) is silently discarded (RFC 1661 §5.2-§5.4). Unknown codes are
  RUC and answered with Code-Reject. Extension codes (LCP Echo, Discard, Protocol-Reject)
  are classified by the handler into RXR, RXJ+ or RXJ-.
* The new state is set before the actions run, so layer callbacks see the state they
  caused. Callbacks may call into *other* automata but not back into this one.
* Time is injected: the restart timer is an absolute deadline read with :meth:`get_timer`;
  :meth:`handle_timer` turns an expired deadline into TO+ (restart counter > 0) or TO-.
  The counter is set by irc to Max-Configure (or Max-Terminate when the same transition
  sends a Terminate-Request) and decremented by every scr/str. A timeout retransmits the
  outstanding Configure-Request unchanged, with the same Identifier (RFC 1661 §5.1).
* Max-Failure: after that many consecutive Configure-Naks the Naks become Rejects so a
  negotiation that does not converge ends (RFC 1661 §4.6).
* Nothing here raises on peer input: malformed packets are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Callable

from sstpd.errors import ParseError
from sstpd.proto.ppp.frame import Code, Packet, decode_options, encode_options
from sstpd.proto.ppp.fsm.handler import FsmHandler
from sstpd.proto.ppp.fsm.table import TIMED_STATES, TRANSITIONS, Action, FsmEvent, State

__all__ = ["Fsm"]


class Fsm:
    """One RFC 1661 automaton; ``send`` receives every packet the automaton emits."""

    def __init__(
        self,
        name: str,
        handler: FsmHandler,
        send: Callable[[Packet], None],
        *,
        restart_interval: float = 3.0,
        max_configure: int = 10,
        max_terminate: int = 2,
        max_failure: int = 5,
    ) -> None:
        self.name = name
        self.handler = handler
        self._send = send
        self.restart_interval = restart_interval
        self.max_configure = max_configure
        self.max_terminate = max_terminate
        self.max_failure = max_failure
        self.state = State.INITIAL
        self.restart_count = 0
        self.deadline: float | None = None
        self.peer_mru = 1500  # Code-Reject is truncated to fit (RFC 1661 §5.6)
        self.dropped = 0  # malformed or unexpected packets silently discarded
        self.ignored = 0  # events the table calls impossible in the current state
        self._id = 0
        self._req_id = 0
        self._req_data: bytes | None = None
        self._nak_count = 0
        self._now = 0.0
        self._packet: Packet | None = None  # the packet that caused the current event
        self._reply: Packet | None = None  # our answer to it (sca/scn)
        self.terminate_reason = b""
        self._prev_state = State.INITIAL
        self._seen_reply = False
        self._event = FsmEvent.UP

    # ------------------------------------------------------------------ administrative

    def up(self, now: float) -> None:
        self._fire(FsmEvent.UP, now)

    def down(self, now: float) -> None:
        self._fire(FsmEvent.DOWN, now)

    def open(self, now: float) -> None:
        self._fire(FsmEvent.OPEN, now)

    def close(self, now: float, reason: str = "") -> None:
        self.terminate_reason = reason.encode("utf-8", "replace")
        self._fire(FsmEvent.CLOSE, now)

    def protocol_rejected(self, now: float) -> None:
        """The peer Protocol-Rejected this protocol (RXJ-, RFC 1661 §5.7)."""
        self._fire(FsmEvent.RXJ_MINUS, now)

    def send_packet(self, code: int, data: bytes) -> None:
        """Send a packet outside the automaton (LCP Protocol-Reject, Echo-Request)."""
        self._id = (self._id + 1) & 0xFF
        self._send(Packet(code, self._id, data))

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        self._fire(FsmEvent.TO_PLUS if self.restart_count > 0 else FsmEvent.TO_MINUS, now)

    # ------------------------------------------------------------------ packets

    def receive(self, payload: bytes, now: float) -> None:
        """Handle one received packet of this protocol (the frame's payload)."""
        try:
            packet = Packet.decode(payload)
        except ParseError:
            self.dropped += 1
            return
        event = self._classify(packet)
        if event is None:
            self.dropped += 1
            return
        self._fire(event, now, packet)

    def _classify(self, packet: Packet) -> FsmEvent | None:
        code = packet.code
        if code == Code.CONFIGURE_REQUEST:
            return self._judge(packet)
        if code in (Code.CONFIGURE_ACK, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            if self._req_data is None or packet.identifier != self._req_id or self._seen_reply:
                return None  # stale, duplicate or unsolicited (pppd: reqid / seen_ack)
            if code == Code.CONFIGURE_ACK:
                if packet.data != self._req_data:
                    return None
                if self.state in (State.REQ_SENT, State.ACK_SENT):
                    self.handler.request_acked(decode_options(packet.data))
                self._seen_reply = True
                return FsmEvent.RCA
            try:
                options = decode_options(packet.data)
            except ParseError:
                return None
            if self.state in (State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT, State.OPENED):
                if code == Code.CONFIGURE_NAK:
                    ok = self.handler.request_naked(options)
                else:
                    ok = self.handler.request_rejected(options)
                if not ok:
                    return None
            self._seen_reply = True
            return FsmEvent.RCN
        if code == Code.TERMINATE_REQUEST:
            return FsmEvent.RTR
        if code == Code.TERMINATE_ACK:
            return FsmEvent.RTA
        if code == Code.CODE_REJECT:
            if not packet.data:
                return None
            # Rejecting one of the basic codes 1-7 means the peer cannot run this protocol.
            return FsmEvent.RXJ_MINUS if 1 <= packet.data[0] <= 7 else FsmEvent.RXJ_PLUS
        return self.handler.extension_event(packet, self.state) or FsmEvent.RUC

    def _judge(self, packet: Packet) -> FsmEvent | None:
        try:
            options = decode_options(packet.data)
        except ParseError:
            return None
        if self.state not in (
            State.STOPPED,
            State.REQ_SENT,
            State.ACK_RCVD,
            State.ACK_SENT,
            State.OPENED,
        ):
            return FsmEvent.RCR_PLUS  # only answered with Terminate-Ack, or ignored
        verdict = self.handler.judge_request(options)
        if verdict.reject:
            self._reply = Packet(
                Code.CONFIGURE_REJECT, packet.identifier, encode_options(verdict.reject)
            )
        elif verdict.nak:
            self._nak_count += 1
            code = (
                Code.CONFIGURE_REJECT if self._nak_count > self.max_failure else Code.CONFIGURE_NAK
            )
            self._reply = Packet(code, packet.identifier, encode_options(verdict.nak))
        else:
            self._nak_count = 0
            self._reply = Packet(Code.CONFIGURE_ACK, packet.identifier, packet.data)
            return FsmEvent.RCR_PLUS
        return FsmEvent.RCR_MINUS

    # ------------------------------------------------------------------ the automaton

    def _fire(self, event: FsmEvent, now: float, packet: Packet | None = None) -> None:
        self._now = now
        entry = TRANSITIONS.get((self.state, event))
        if entry is None:
            self.ignored += 1
            return
        actions, new_state = entry
        self._prev_state, self._event = self.state, event
        self.state = new_state
        self._packet = packet
        if new_state not in TIMED_STATES:
            self.deadline = None
        for action in actions:
            self._run(action, terminating=Action.STR in actions)
        self._packet = None
        self._reply = None

    def _run(self, action: Action, *, terminating: bool) -> None:
        if action is Action.IRC:
            self.restart_count = self.max_terminate if terminating else self.max_configure
        elif action is Action.ZRC:
            self.restart_count = 0
            self.deadline = self._now + self.restart_interval
        elif action is Action.SCR:
            self._send_configure_request()
        elif action is Action.SCA or action is Action.SCN:
            if self._reply is not None:
                self._send(self._reply)
        elif action is Action.STR:
            self._id = (self._id + 1) & 0xFF
            self._send(Packet(Code.TERMINATE_REQUEST, self._id, self.terminate_reason))
            self.restart_count -= 1
            self.deadline = self._now + self.restart_interval
        elif action is Action.STA:
            ident = self._packet.identifier if self._packet is not None else self._id
            self._send(Packet(Code.TERMINATE_ACK, ident))
        elif action is Action.SCJ:
            if self._packet is not None:
                self._id = (self._id + 1) & 0xFF
                rejected = self._packet.encode()[: max(0, self.peer_mru - 4)]
                self._send(Packet(Code.CODE_REJECT, self._id, rejected))
        elif action is Action.SER:
            if self._packet is not None:
                reply = self.handler.extension_reply(self._packet)
                if reply is not None:
                    self._send(reply)
        elif action is Action.TLU:
            self._nak_count = 0
            self.handler.this_layer_up()
        elif action is Action.TLD:
            self.handler.this_layer_down()
        elif action is Action.TLS:
            self.handler.this_layer_started()
        elif action is Action.TLF:
            self.handler.this_layer_finished()

    def _send_configure_request(self) -> None:
        if (
            self._event is FsmEvent.TO_PLUS
            and self._prev_state in (State.REQ_SENT, State.ACK_SENT)
            and self._req_data is not None
        ):
            data = self._req_data  # retransmission: same options, same Identifier
        else:
            if self._prev_state not in (State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT):
                self.handler.reset_request()  # a fresh negotiation (pppd fsm_sconfreq)
            self._id = (self._id + 1) & 0xFF
            self._req_id = self._id
            data = encode_options(self.handler.build_request())
            self._req_data = data
        self._seen_reply = False
        self._send(Packet(Code.CONFIGURE_REQUEST, self._req_id, data))
        self.restart_count -= 1
        self.deadline = self._now + self.restart_interval
