"""The RFC 1661 option-negotiation automaton, shared by LCP and IPCP.

Theory of operation
===================

RFC 1661 §4 describes every PPP control protocol with one automaton of ten states and
sixteen events; the protocols differ only in their options. As in pppd (``fsm.c`` plus the
``fsm_callbacks`` of ``lcp.c``/``ipcp.c``) this module holds the automaton once and asks
an :class:`FsmHandler` for everything protocol specific: which options to request, how to
judge the peer's request, what to make of a Nak or Reject, and what to do when the layer
goes up, down, starts or finishes.

* The transitions are data: :data:`TRANSITIONS` maps ``(State, FsmEvent)`` to
  ``(actions, next State)``, transcribed from the table in RFC 1661 §4.1 with the RFC's
  names. A pair missing from the table is an event the RFC calls impossible in that state
  ("-"); it is counted in ``ignored`` and changes nothing. The passive/restart options
  ("p", "r") are not implemented.
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

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sstpd.errors import ParseError
from sstpd.proto.ppp.frame import Code, Option, Packet, decode_options, encode_options

__all__ = ["TRANSITIONS", "Action", "Fsm", "FsmEvent", "FsmHandler", "State", "Verdict"]


@enum.unique
class State(enum.IntEnum):
    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


@enum.unique
class FsmEvent(enum.Enum):
    """The RFC 1661 §4.1 events (named ``FsmEvent``: the session's events are other things)."""

    UP = "Up"
    DOWN = "Down"
    OPEN = "Open"
    CLOSE = "Close"
    TO_PLUS = "TO+"
    TO_MINUS = "TO-"
    RCR_PLUS = "RCR+"
    RCR_MINUS = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_PLUS = "RXJ+"
    RXJ_MINUS = "RXJ-"
    RXR = "RXR"


@enum.unique
class Action(enum.Enum):
    TLU = "tlu"  # This-Layer-Up
    TLD = "tld"  # This-Layer-Down
    TLS = "tls"  # This-Layer-Started
    TLF = "tlf"  # This-Layer-Finished
    IRC = "irc"  # Initialize-Restart-Count
    ZRC = "zrc"  # Zero-Restart-Count
    SCR = "scr"  # Send-Configure-Request
    SCA = "sca"  # Send-Configure-Ack
    SCN = "scn"  # Send-Configure-Nak/Rej
    STR = "str"  # Send-Terminate-Request
    STA = "sta"  # Send-Terminate-Ack
    SCJ = "scj"  # Send-Code-Reject
    SER = "ser"  # Send-Echo-Reply


S, E, A = State, FsmEvent, Action
_T = dict[tuple[State, FsmEvent], tuple[tuple[Action, ...], State]]

#: RFC 1661 §4.1 state transition table.
TRANSITIONS: _T = {
    (S.INITIAL, E.UP): ((), S.CLOSED),
    (S.INITIAL, E.OPEN): ((A.TLS,), S.STARTING),
    (S.INITIAL, E.CLOSE): ((), S.INITIAL),
    (S.STARTING, E.UP): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.STARTING, E.OPEN): ((), S.STARTING),
    (S.STARTING, E.CLOSE): ((A.TLF,), S.INITIAL),
    # Closed
    (S.CLOSED, E.DOWN): ((), S.INITIAL),
    (S.CLOSED, E.OPEN): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.CLOSED, E.CLOSE): ((), S.CLOSED),
    (S.CLOSED, E.RCR_PLUS): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCR_MINUS): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCA): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RCN): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RTR): ((A.STA,), S.CLOSED),
    (S.CLOSED, E.RTA): ((), S.CLOSED),
    (S.CLOSED, E.RUC): ((A.SCJ,), S.CLOSED),
    (S.CLOSED, E.RXJ_PLUS): ((), S.CLOSED),
    (S.CLOSED, E.RXJ_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSED, E.RXR): ((), S.CLOSED),
    # Stopped
    (S.STOPPED, E.DOWN): ((A.TLS,), S.STARTING),
    (S.STOPPED, E.OPEN): ((), S.STOPPED),
    (S.STOPPED, E.CLOSE): ((), S.CLOSED),
    (S.STOPPED, E.RCR_PLUS): ((A.IRC, A.SCR, A.SCA), S.ACK_SENT),
    (S.STOPPED, E.RCR_MINUS): ((A.IRC, A.SCR, A.SCN), S.REQ_SENT),
    (S.STOPPED, E.RCA): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RCN): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RTR): ((A.STA,), S.STOPPED),
    (S.STOPPED, E.RTA): ((), S.STOPPED),
    (S.STOPPED, E.RUC): ((A.SCJ,), S.STOPPED),
    (S.STOPPED, E.RXJ_PLUS): ((), S.STOPPED),
    (S.STOPPED, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPED, E.RXR): ((), S.STOPPED),
    # Closing
    (S.CLOSING, E.DOWN): ((), S.INITIAL),
    (S.CLOSING, E.OPEN): ((), S.STOPPING),
    (S.CLOSING, E.CLOSE): ((), S.CLOSING),
    (S.CLOSING, E.TO_PLUS): ((A.STR,), S.CLOSING),
    (S.CLOSING, E.TO_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RCR_PLUS): ((), S.CLOSING),
    (S.CLOSING, E.RCR_MINUS): ((), S.CLOSING),
    (S.CLOSING, E.RCA): ((), S.CLOSING),
    (S.CLOSING, E.RCN): ((), S.CLOSING),
    (S.CLOSING, E.RTR): ((A.STA,), S.CLOSING),
    (S.CLOSING, E.RTA): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RUC): ((A.SCJ,), S.CLOSING),
    (S.CLOSING, E.RXJ_PLUS): ((), S.CLOSING),
    (S.CLOSING, E.RXJ_MINUS): ((A.TLF,), S.CLOSED),
    (S.CLOSING, E.RXR): ((), S.CLOSING),
    # Stopping
    (S.STOPPING, E.DOWN): ((), S.STARTING),
    (S.STOPPING, E.OPEN): ((), S.STOPPING),
    (S.STOPPING, E.CLOSE): ((), S.CLOSING),
    (S.STOPPING, E.TO_PLUS): ((A.STR,), S.STOPPING),
    (S.STOPPING, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RCR_PLUS): ((), S.STOPPING),
    (S.STOPPING, E.RCR_MINUS): ((), S.STOPPING),
    (S.STOPPING, E.RCA): ((), S.STOPPING),
    (S.STOPPING, E.RCN): ((), S.STOPPING),
    (S.STOPPING, E.RTR): ((A.STA,), S.STOPPING),
    (S.STOPPING, E.RTA): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RUC): ((A.SCJ,), S.STOPPING),
    (S.STOPPING, E.RXJ_PLUS): ((), S.STOPPING),
    (S.STOPPING, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.STOPPING, E.RXR): ((), S.STOPPING),
    # Req-Sent
    (S.REQ_SENT, E.DOWN): ((), S.STARTING),
    (S.REQ_SENT, E.OPEN): ((), S.REQ_SENT),
    (S.REQ_SENT, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.REQ_SENT, E.TO_PLUS): ((A.SCR,), S.REQ_SENT),
    (S.REQ_SENT, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.REQ_SENT, E.RCR_PLUS): ((A.SCA,), S.ACK_SENT),
    (S.REQ_SENT, E.RCR_MINUS): ((A.SCN,), S.REQ_SENT),
    (S.REQ_SENT, E.RCA): ((A.IRC,), S.ACK_RCVD),
    (S.REQ_SENT, E.RCN): ((A.IRC, A.SCR), S.REQ_SENT),
    (S.REQ_SENT, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.REQ_SENT, E.RTA): ((), S.REQ_SENT),
    (S.REQ_SENT, E.RUC): ((A.SCJ,), S.REQ_SENT),
    (S.REQ_SENT, E.RXJ_PLUS): ((), S.REQ_SENT),
    (S.REQ_SENT, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.REQ_SENT, E.RXR): ((), S.REQ_SENT),
    # Ack-Rcvd
    (S.ACK_RCVD, E.DOWN): ((), S.STARTING),
    (S.ACK_RCVD, E.OPEN): ((), S.ACK_RCVD),
    (S.ACK_RCVD, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.ACK_RCVD, E.TO_PLUS): ((A.SCR,), S.REQ_SENT),
    (S.ACK_RCVD, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_RCVD, E.RCR_PLUS): ((A.SCA, A.TLU), S.OPENED),
    (S.ACK_RCVD, E.RCR_MINUS): ((A.SCN,), S.ACK_RCVD),
    (S.ACK_RCVD, E.RCA): ((A.SCR,), S.REQ_SENT),  # crossed connection ("x")
    (S.ACK_RCVD, E.RCN): ((A.SCR,), S.REQ_SENT),
    (S.ACK_RCVD, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.ACK_RCVD, E.RTA): ((), S.REQ_SENT),
    (S.ACK_RCVD, E.RUC): ((A.SCJ,), S.ACK_RCVD),
    (S.ACK_RCVD, E.RXJ_PLUS): ((), S.REQ_SENT),
    (S.ACK_RCVD, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_RCVD, E.RXR): ((), S.ACK_RCVD),
    # Ack-Sent
    (S.ACK_SENT, E.DOWN): ((), S.STARTING),
    (S.ACK_SENT, E.OPEN): ((), S.ACK_SENT),
    (S.ACK_SENT, E.CLOSE): ((A.IRC, A.STR), S.CLOSING),
    (S.ACK_SENT, E.TO_PLUS): ((A.SCR,), S.ACK_SENT),
    (S.ACK_SENT, E.TO_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_SENT, E.RCR_PLUS): ((A.SCA,), S.ACK_SENT),
    (S.ACK_SENT, E.RCR_MINUS): ((A.SCN,), S.REQ_SENT),
    (S.ACK_SENT, E.RCA): ((A.IRC, A.TLU), S.OPENED),
    (S.ACK_SENT, E.RCN): ((A.IRC, A.SCR), S.ACK_SENT),
    (S.ACK_SENT, E.RTR): ((A.STA,), S.REQ_SENT),
    (S.ACK_SENT, E.RTA): ((), S.ACK_SENT),
    (S.ACK_SENT, E.RUC): ((A.SCJ,), S.ACK_SENT),
    (S.ACK_SENT, E.RXJ_PLUS): ((), S.ACK_SENT),
    (S.ACK_SENT, E.RXJ_MINUS): ((A.TLF,), S.STOPPED),
    (S.ACK_SENT, E.RXR): ((), S.ACK_SENT),
    # Opened
    (S.OPENED, E.DOWN): ((A.TLD,), S.STARTING),
    (S.OPENED, E.OPEN): ((), S.OPENED),
    (S.OPENED, E.CLOSE): ((A.TLD, A.IRC, A.STR), S.CLOSING),
    (S.OPENED, E.RCR_PLUS): ((A.TLD, A.SCR, A.SCA), S.ACK_SENT),
    (S.OPENED, E.RCR_MINUS): ((A.TLD, A.SCR, A.SCN), S.REQ_SENT),
    (S.OPENED, E.RCA): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RCN): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RTR): ((A.TLD, A.ZRC, A.STA), S.STOPPING),
    (S.OPENED, E.RTA): ((A.TLD, A.SCR), S.REQ_SENT),
    (S.OPENED, E.RUC): ((A.SCJ,), S.OPENED),
    (S.OPENED, E.RXJ_PLUS): ((), S.OPENED),
    (S.OPENED, E.RXJ_MINUS): ((A.TLD, A.IRC, A.STR), S.STOPPING),
    (S.OPENED, E.RXR): ((A.SER,), S.OPENED),
}
del S, E, A

_TIMED_STATES = frozenset(
    {State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT}
)


@dataclass(frozen=True)
class Verdict:
    """The handler's judgement of a peer Configure-Request (pppd ``reqci``)."""

    nak: tuple[Option, ...] = ()
    reject: tuple[Option, ...] = ()


class FsmHandler(Protocol):
    """Protocol-specific callbacks, in the shape of pppd's ``fsm_callbacks``."""

    def reset_request(self) -> None:
        """Negotiation (re)starts from Closed/Stopped/Starting: reset our wanted options."""

    def build_request(self) -> list[Option]:
        """Options for our next Configure-Request (``addci``)."""
        ...

    def judge_request(self, options: list[Option]) -> Verdict:
        """Judge the peer's Configure-Request; empty verdict = acknowledge all (``reqci``)."""
        ...

    def request_acked(self, options: list[Option]) -> None:
        """Our request was acknowledged (``ackci``)."""

    def request_naked(self, options: list[Option]) -> bool:
        """Adjust our wants after a Configure-Nak; False = malformed, drop it."""
        ...

    def request_rejected(self, options: list[Option]) -> bool:
        """Stop asking for the rejected options; False = malformed, drop it."""
        ...

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        """Classify a code beyond Code-Reject: RXR, RXJ+, RXJ-, or None = unknown (RUC)."""
        ...

    def extension_reply(self, packet: Packet) -> Packet | None:
        """``ser``: the answer to an RXR packet in Opened (Echo-Reply), if any."""
        ...

    def this_layer_up(self) -> None: ...

    def this_layer_down(self) -> None: ...

    def this_layer_started(self) -> None: ...

    def this_layer_finished(self) -> None: ...


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
        if new_state not in _TIMED_STATES:
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
