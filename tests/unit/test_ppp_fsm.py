"""The RFC 1661 automaton: its table, driven through the public inputs, and timer paths."""

from __future__ import annotations

import pytest

from sstpd.proto.ppp.frame import Code, Option, Packet, encode_options
from sstpd.proto.ppp.fsm import TRANSITIONS, Action, Fsm, FsmEvent, State, Verdict

OUR_OPTS = [Option(5, b"\x01\x02\x03\x04")]
PEER_OPTS = encode_options([Option(1, b"\x05\xdc")])


class RecordingHandler:
    """A handler whose verdict is set by the test; records layer callbacks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.verdict = Verdict()
        self.naks: list[list[Option]] = []
        self.rejects: list[list[Option]] = []

    def reset_request(self) -> None:
        self.calls.append("reset")

    def build_request(self) -> list[Option]:
        return list(OUR_OPTS)

    def judge_request(self, options: list[Option]) -> Verdict:
        return self.verdict

    def request_acked(self, options: list[Option]) -> None:
        self.calls.append("acked")

    def request_naked(self, options: list[Option]) -> bool:
        self.naks.append(options)
        return True

    def request_rejected(self, options: list[Option]) -> bool:
        self.rejects.append(options)
        return True

    def extension_event(self, packet: Packet, state: State) -> FsmEvent | None:
        return FsmEvent.RXR if packet.code == Code.ECHO_REQUEST else None

    def extension_reply(self, packet: Packet) -> Packet | None:
        return Packet(Code.ECHO_REPLY, packet.identifier, packet.data)

    def this_layer_up(self) -> None:
        self.calls.append("tlu")

    def this_layer_down(self) -> None:
        self.calls.append("tld")

    def this_layer_started(self) -> None:
        self.calls.append("tls")

    def this_layer_finished(self) -> None:
        self.calls.append("tlf")


class Harness:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.sent: list[Packet] = []
        self.fsm = Fsm("TEST", self.handler, self.sent.append)
        self.now = 100.0

    def incoming(self, code: int, ident: int, data: bytes = b"") -> None:
        self.fsm.receive(Packet(code, ident, data).encode(), self.now)

    def codes(self) -> list[int]:
        codes = [p.code for p in self.sent]
        self.sent.clear()
        return codes

    def last_request(self) -> Packet:
        return [p for p in self.sent if p.code == Code.CONFIGURE_REQUEST][-1]

    def open_to_req_sent(self) -> Packet:
        self.fsm.open(self.now)
        self.fsm.up(self.now)
        req = self.last_request()
        self.sent.clear()
        self.handler.calls.clear()
        return req

    def opened(self) -> Packet:
        req = self.open_to_req_sent()
        self.incoming(Code.CONFIGURE_ACK, req.identifier, req.data)
        self.incoming(Code.CONFIGURE_REQUEST, 50, PEER_OPTS)
        assert self.fsm.state is State.OPENED
        self.sent.clear()
        self.handler.calls.clear()
        return req


def _stimulate(h: Harness, event: FsmEvent, req: Packet) -> None:
    f = h.fsm
    if event is FsmEvent.UP:
        f.up(h.now)
    elif event is FsmEvent.DOWN:
        f.down(h.now)
    elif event is FsmEvent.OPEN:
        f.open(h.now)
    elif event is FsmEvent.CLOSE:
        f.close(h.now, "bye")
    elif event in (FsmEvent.TO_PLUS, FsmEvent.TO_MINUS):
        f.restart_count = 1 if event is FsmEvent.TO_PLUS else 0
        f.deadline = h.now
        f.handle_timer(h.now)
    elif event is FsmEvent.RCR_PLUS:
        h.handler.verdict = Verdict()
        h.incoming(Code.CONFIGURE_REQUEST, 50, PEER_OPTS)
    elif event is FsmEvent.RCR_MINUS:
        h.handler.verdict = Verdict(nak=(Option(1, b"\x05\xdc"),))
        h.incoming(Code.CONFIGURE_REQUEST, 50, PEER_OPTS)
    elif event is FsmEvent.RCA:
        h.incoming(Code.CONFIGURE_ACK, req.identifier, req.data)
    elif event is FsmEvent.RCN:
        h.incoming(Code.CONFIGURE_NAK, req.identifier, encode_options(OUR_OPTS))
    elif event is FsmEvent.RTR:
        h.incoming(Code.TERMINATE_REQUEST, 60)
    elif event is FsmEvent.RTA:
        h.incoming(Code.TERMINATE_ACK, 61)
    elif event is FsmEvent.RUC:
        h.incoming(99, 62, b"xyz")
    elif event is FsmEvent.RXJ_PLUS:
        h.incoming(Code.CODE_REJECT, 63, Packet(99, 1, b"").encode())
    elif event is FsmEvent.RXJ_MINUS:
        h.incoming(Code.CODE_REJECT, 64, Packet(Code.CONFIGURE_REQUEST, 1, b"").encode())
    elif event is FsmEvent.RXR:
        h.incoming(Code.ECHO_REQUEST, 65, b"\0\0\0\0")


_SEND_CODES = {
    Action.SCR: Code.CONFIGURE_REQUEST,
    Action.SCA: Code.CONFIGURE_ACK,
    Action.SCN: Code.CONFIGURE_NAK,
    Action.STR: Code.TERMINATE_REQUEST,
    Action.STA: Code.TERMINATE_ACK,
    Action.SCJ: Code.CODE_REJECT,
    Action.SER: Code.ECHO_REPLY,
}
_LAYER_CALLS = {Action.TLU: "tlu", Action.TLD: "tld", Action.TLS: "tls", Action.TLF: "tlf"}


@pytest.mark.parametrize(
    ("state", "event"), sorted(TRANSITIONS, key=lambda k: (k[0], k[1].value)), ids=str
)
def test_every_table_entry_through_public_inputs(state: State, event: FsmEvent) -> None:
    actions, new_state = TRANSITIONS[(state, event)]
    h = Harness()
    req = h.open_to_req_sent()  # gives an outstanding request to Ack/Nak
    h.fsm.state = state
    _stimulate(h, event, req)
    assert h.fsm.state is new_state
    assert h.codes() == [_SEND_CODES[a] for a in actions if a in _SEND_CODES]
    layer = [c for c in h.handler.calls if c in _LAYER_CALLS.values()]
    assert layer == [_LAYER_CALLS[a] for a in actions if a in _LAYER_CALLS]
    if Action.IRC in actions and Action.STR in actions:
        assert h.fsm.restart_count == h.fsm.max_terminate - 1
    elif Action.IRC in actions and Action.SCR in actions:
        assert h.fsm.restart_count == h.fsm.max_configure - 1
    if Action.ZRC in actions:
        assert h.fsm.restart_count == 0
        assert h.fsm.get_timer() == h.now + h.fsm.restart_interval
    if new_state in (State.INITIAL, State.STARTING, State.CLOSED, State.STOPPED, State.OPENED):
        assert h.fsm.get_timer() is None


def test_table_covers_every_rfc_event_for_every_state() -> None:
    # Up/Open/Close/Down and received events are defined wherever RFC 1661 defines them;
    # only Initial/Starting lack packet events and non-timed states lack TO+/TO-.
    for state in State:
        assert (state, FsmEvent.OPEN) in TRANSITIONS
        assert (state, FsmEvent.CLOSE) in TRANSITIONS

    def count(state: State) -> int:
        return sum(1 for s, _ in TRANSITIONS if s is state)

    assert count(State.OPENED) == 13  # all but Up, TO+, TO-
    for timed in (State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT):
        assert count(timed) == 15  # all but Up
    assert count(State.CLOSED) == count(State.STOPPED) == 13
    assert count(State.INITIAL) == count(State.STARTING) == 3


def test_trivial_handshake_we_ack_first() -> None:
    h = Harness()
    h.fsm.open(h.now)
    assert h.fsm.state is State.STARTING and h.handler.calls == ["tls"]
    h.fsm.up(h.now)
    req = h.last_request()
    assert req.data == encode_options(OUR_OPTS)
    assert h.fsm.state is State.REQ_SENT
    assert h.fsm.get_timer() == h.now + 3.0
    h.sent.clear()
    h.incoming(Code.CONFIGURE_REQUEST, 9, PEER_OPTS)
    assert h.sent == [Packet(Code.CONFIGURE_ACK, 9, PEER_OPTS)]
    assert h.fsm.state is State.ACK_SENT
    h.incoming(Code.CONFIGURE_ACK, req.identifier, req.data)
    assert h.fsm.state is State.OPENED
    assert h.handler.calls[-1] == "tlu"
    assert h.fsm.get_timer() is None


def test_ack_with_wrong_id_or_options_is_dropped() -> None:
    h = Harness()
    req = h.open_to_req_sent()
    h.incoming(Code.CONFIGURE_ACK, (req.identifier + 1) & 0xFF, req.data)
    h.incoming(Code.CONFIGURE_ACK, req.identifier, req.data + b"\x07\x02")
    assert h.fsm.state is State.REQ_SENT
    assert h.fsm.dropped == 2
    h.incoming(Code.CONFIGURE_ACK, req.identifier, req.data)
    assert h.fsm.state is State.ACK_RCVD
    h.incoming(Code.CONFIGURE_ACK, req.identifier, req.data)  # duplicate
    assert h.fsm.state is State.ACK_RCVD
    assert h.fsm.dropped == 3


def test_nak_triggers_new_request_with_new_id() -> None:
    h = Harness()
    req = h.open_to_req_sent()
    h.incoming(Code.CONFIGURE_NAK, req.identifier, encode_options(OUR_OPTS))
    new = h.last_request()
    assert new.identifier != req.identifier
    assert h.handler.naks == [OUR_OPTS]
    assert h.fsm.restart_count == h.fsm.max_configure - 1


def test_timeout_retransmits_same_request_then_gives_up_after_max_configure() -> None:
    h = Harness()
    req = h.open_to_req_sent()
    sent = [req]
    now = h.now
    while True:
        deadline = h.fsm.get_timer()
        if deadline is None:
            break
        assert deadline == now + 3.0
        now = deadline
        h.fsm.handle_timer(now - 0.001)  # not yet
        assert not h.sent
        h.fsm.handle_timer(now)
        sent += [p for p in h.sent if p.code == Code.CONFIGURE_REQUEST]
        h.sent.clear()
    assert len(sent) == 10  # Max-Configure
    assert {(p.identifier, p.data) for p in sent} == {(req.identifier, req.data)}
    assert h.fsm.state is State.STOPPED
    assert h.handler.calls == ["tlf"]


def test_close_from_opened_sends_terminate_and_finishes_on_ack() -> None:
    h = Harness()
    h.opened()
    h.fsm.close(h.now, "admin")
    assert h.fsm.state is State.CLOSING
    assert h.sent[-1].code == Code.TERMINATE_REQUEST and h.sent[-1].data == b"admin"
    assert h.handler.calls == ["tld"]
    h.incoming(Code.TERMINATE_ACK, h.sent[-1].identifier)
    assert h.fsm.state is State.CLOSED
    assert h.handler.calls == ["tld", "tlf"]
    assert h.fsm.get_timer() is None


def test_closing_retransmits_terminate_max_terminate_times() -> None:
    h = Harness()
    h.opened()
    h.fsm.close(h.now, "")
    now = h.now
    while (deadline := h.fsm.get_timer()) is not None:
        now = deadline
        h.fsm.handle_timer(now)
    assert [p.code for p in h.sent] == [Code.TERMINATE_REQUEST] * 2
    assert h.fsm.state is State.CLOSED
    assert h.handler.calls[-1] == "tlf"


def test_peer_terminate_waits_one_restart_interval() -> None:
    h = Harness()
    h.opened()
    h.incoming(Code.TERMINATE_REQUEST, 77, b"bye")
    assert h.sent == [Packet(Code.TERMINATE_ACK, 77)]
    assert h.fsm.state is State.STOPPING
    assert h.fsm.get_timer() == h.now + 3.0
    h.fsm.handle_timer(h.now + 3.0)
    assert h.fsm.state is State.STOPPED
    assert h.handler.calls == ["tld", "tlf"]


def test_unknown_code_is_code_rejected_with_the_packet() -> None:
    h = Harness()
    h.opened()
    h.incoming(42, 5, b"abc")
    assert h.sent == [
        Packet(Code.CODE_REJECT, h.sent[0].identifier, bytes.fromhex("2a050007616263"))
    ]
    assert h.fsm.state is State.OPENED


def test_code_reject_truncated_to_peer_mru() -> None:
    h = Harness()
    h.opened()
    h.fsm.peer_mru = 20
    h.incoming(42, 5, bytes(100))
    assert len(h.sent[0].encode()) == 20


def test_max_failure_turns_naks_into_rejects() -> None:
    h = Harness()
    h.open_to_req_sent()
    h.handler.verdict = Verdict(nak=(Option(1, b"\x05\xdc"),))
    codes = []
    for i in range(7):
        h.incoming(Code.CONFIGURE_REQUEST, i, PEER_OPTS)
        codes.append(h.sent[-1].code)
    assert codes == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_REJECT] * 2


def test_reject_verdict_wins_over_nak() -> None:
    h = Harness()
    h.open_to_req_sent()
    h.handler.verdict = Verdict(nak=(Option(1, b"\x05\xdc"),), reject=(Option(13, b"\x06"),))
    h.incoming(Code.CONFIGURE_REQUEST, 3, PEER_OPTS)
    assert h.sent == [Packet(Code.CONFIGURE_REJECT, 3, b"\x0d\x03\x06")]


def test_renegotiation_in_opened_goes_down_and_resets_request() -> None:
    h = Harness()
    h.opened()
    h.incoming(Code.CONFIGURE_REQUEST, 90, PEER_OPTS)
    assert h.handler.calls[:2] == ["tld", "reset"]
    assert [p.code for p in h.sent] == [Code.CONFIGURE_REQUEST, Code.CONFIGURE_ACK]
    assert h.fsm.state is State.ACK_SENT


def test_echo_request_answered_only_when_opened() -> None:
    h = Harness()
    h.open_to_req_sent()
    h.incoming(Code.ECHO_REQUEST, 1, b"\0\0\0\0")
    assert h.sent == []
    h2 = Harness()
    h2.opened()
    h2.incoming(Code.ECHO_REQUEST, 1, b"\0\0\0\0")
    assert h2.sent == [Packet(Code.ECHO_REPLY, 1, b"\0\0\0\0")]


def test_malformed_packets_are_counted_not_raised() -> None:
    h = Harness()
    h.open_to_req_sent()
    h.fsm.receive(b"\x01\x01", h.now)
    h.fsm.receive(bytes.fromhex("01010006ff05"), h.now)  # bad option length
    assert h.fsm.dropped == 2
    assert h.fsm.state is State.REQ_SENT


def test_protocol_rejected_in_opened_stops_layer() -> None:
    h = Harness()
    h.opened()
    h.fsm.protocol_rejected(h.now)
    assert h.fsm.state is State.STOPPING
    assert h.handler.calls == ["tld"]
    assert h.sent[-1].code == Code.TERMINATE_REQUEST
