"""IPV6CP inside PppServer: literal option sets of Windows and pppd, the NCP closing rule,
an exhausted prefix pool, malformed options, and IPv4-only links unchanged."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network

import hypothesis.strategies as st
from hypothesis import given, settings

from sstpd.proto.ppp.frame import Code, Option, Packet, Protocol, decode_options, encode_options
from sstpd.proto.ppp.fsm import State
from sstpd.proto.ppp.link import (
    LinkDown,
    Network6Down,
    Network6Up,
    NetworkUp,
    Notice,
    Phase,
    PppServer,
    PppServerConfig,
)
from tests.unit.test_ppp_negotiation import (
    LOCAL,
    MSCHAP_FIRST,
    PEER,
    PPPD_LCP,
    USERS,
    Wire,
    chap_login,
    counter_random,
    frame,
    lcp,
)

PREFIX = IPv6Network("2001:db8:0:7::/64")
# Windows 10/11 IPV6CP Configure-Request: only the Interface-Identifier option, a random
# IID (RFC 5072 §4.1); pppd 2.4.9/2.5 with +ipv6 sends the same single option.
WINDOWS_IID = bytes.fromhex("5c4a1ef0937b22d1")
PPPD_IID = bytes.fromhex("0211223344556677")


def iid_option(iid: bytes) -> str:
    return "010a" + iid.hex()


class Net6:
    """A server taken to the Network phase over pppd's LCP and MS-CHAPv2."""

    def __init__(
        self,
        *,
        assign_prefix: Callable[[str], IPv6Network | None] | None = lambda user: PREFIX,
        in_use: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.prefixes_given: list[str] = []

        def assign(user: str) -> IPv6Network | None:
            self.prefixes_given.append(user)
            assert assign_prefix is not None
            return assign_prefix(user)

        self.srv = PppServer(
            PppServerConfig(local_address=LOCAL, auth_methods=MSCHAP_FIRST),
            lookup=USERS.get,
            assign_address=lambda user: PEER,
            assign_prefix=assign if assign_prefix is not None else None,
            iid_in_use=in_use,
            random=counter_random(),  # type: ignore[arg-type]
            now=0.0,
        )
        self.wire = Wire(self.srv)
        self.srv.lower_up(0.0)
        [(_, ours)] = self.wire.out()
        self.wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))
        [(_, challenge)] = self.wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
        out = chap_login(self.wire, challenge, "alice", "wonderland")
        self.requests = {protocol: p for protocol, p in out if p.code == Code.CONFIGURE_REQUEST}
        assert self.srv.phase is Phase.NETWORK

    def ipv6cp(self, code: int, ident: int, data: str) -> list[tuple[int, Packet]]:
        return self.wire.feed(frame(Protocol.IPV6CP, code, ident, data))

    def ipcp_up(self) -> None:
        self.wire.feed(frame(Protocol.IPCP, 1, 1, "03060a080002"))
        req = self.requests[Protocol.IPCP]
        self.wire.feed(frame(Protocol.IPCP, Code.CONFIGURE_ACK, req.identifier, req.data))
        assert self.srv.is_network_up

    def ipv6cp_up(self, iid: bytes = WINDOWS_IID) -> Network6Up:
        [(_, ack)] = self.ipv6cp(Code.CONFIGURE_REQUEST, 1, iid_option(iid))
        assert ack.code == Code.CONFIGURE_ACK
        ours = self.requests[Protocol.IPV6CP]
        assert self.ipv6cp(Code.CONFIGURE_ACK, ours.identifier, ours.data.hex()) == []
        [up] = [e for e in self.srv.pop_events() if isinstance(e, Network6Up)]
        return up


def test_server_opens_ipv6cp_with_its_own_iid_next_to_ipcp() -> None:
    n = Net6()
    assert n.prefixes_given == ["alice"]
    ours = n.requests[Protocol.IPV6CP]
    [option] = decode_options(ours.data)
    assert option.type == 1 and len(option.data) == 8 and option.data != bytes(8)
    assert option.data[0] & 0x02 == 0  # U/L bit cleared: a local-scope identifier
    assert Protocol.IPCP in n.requests


def test_windows_option_set_acked_and_network6_up_carries_the_prefix() -> None:
    n = Net6()
    n.ipcp_up()
    up = n.ipv6cp_up(WINDOWS_IID)
    assert up.peer_iid == WINDOWS_IID and up.prefix == PREFIX
    assert up.local_iid == decode_options(n.requests[Protocol.IPV6CP].data)[0].data
    assert n.srv.is_network6_up and n.srv.prefix == PREFIX
    # IP data is the session's data path's: a frame that reaches the link anyway is
    # counted, never Protocol-Rejected once IPv6 is on
    dropped = n.srv.dropped
    assert n.wire.feed("ff030057" + "60000000") == []
    assert n.wire.feed("ff030021" + "45000000") == []
    assert n.srv.pop_events() == [] and n.srv.dropped == dropped + 2


def test_pppd_ipv6cp_before_ipcp_opens_ipv6_first() -> None:
    n = Net6()
    up = n.ipv6cp_up(PPPD_IID)
    assert up.peer_iid == PPPD_IID and not n.srv.is_network_up
    n.ipcp_up()
    assert any(isinstance(e, NetworkUp) for e in n.srv.pop_events())


def test_zero_iid_and_our_own_iid_are_naked_with_a_fresh_one() -> None:
    n = Net6()
    ours = decode_options(n.requests[Protocol.IPV6CP].data)[0].data
    for ident, iid in ((1, bytes(8)), (2, ours)):
        [(protocol, nak)] = n.ipv6cp(Code.CONFIGURE_REQUEST, ident, iid_option(iid))
        assert protocol == Protocol.IPV6CP and nak.code == Code.CONFIGURE_NAK
        [suggested] = decode_options(nak.data)
        assert suggested.type == 1 and suggested.data not in (bytes(8), ours)
    # the peer takes the suggestion (pppd does): Ack
    [(_, ack)] = n.ipv6cp(Code.CONFIGURE_REQUEST, 3, iid_option(suggested.data))
    assert ack.code == Code.CONFIGURE_ACK


def test_iid_of_another_session_is_naked() -> None:
    taken = {WINDOWS_IID}
    n = Net6(in_use=taken.__contains__)
    [(_, nak)] = n.ipv6cp(Code.CONFIGURE_REQUEST, 1, iid_option(WINDOWS_IID))
    assert nak.code == Code.CONFIGURE_NAK
    assert decode_options(nak.data)[0].data not in taken


def test_compression_and_unknown_options_rejected_iid_kept() -> None:
    n = Net6()
    comp = "0204004f"  # IPv6-Compression-Protocol, RFC 5072 §4.2
    [(_, rej)] = n.ipv6cp(Code.CONFIGURE_REQUEST, 1, iid_option(WINDOWS_IID) + comp + "7702")
    assert rej == Packet(Code.CONFIGURE_REJECT, 1, bytes.fromhex(comp + "7702"))


def test_malformed_ipv6cp_options_are_dropped_or_rejected_never_fatal() -> None:
    n = Net6()
    # option length beyond the packet, option length 1, truncated packet header
    for data in ("010aabcd", "0101", "01"):
        assert n.ipv6cp(Code.CONFIGURE_REQUEST, 1, data) == []
    assert n.wire.feed("ff03805701") == []
    # an Interface-Identifier of the wrong length is rejected, not taken
    [(_, rej)] = n.ipv6cp(Code.CONFIGURE_REQUEST, 2, "0106aabbccdd")
    assert rej.code == Code.CONFIGURE_REJECT
    assert n.srv.phase is Phase.NETWORK and n.srv.ipv6cp is not None
    assert not [e for e in n.srv.pop_events() if isinstance(e, LinkDown)]


def test_ipv6cp_and_ipv6_before_the_network_phase_are_dropped_not_rejected() -> None:
    srv = PppServer(
        PppServerConfig(local_address=LOCAL, auth_methods=MSCHAP_FIRST),
        lookup=USERS.get,
        assign_address=lambda user: PEER,
        assign_prefix=lambda user: PREFIX,
        random=counter_random(),  # type: ignore[arg-type]
        now=0.0,
    )
    wire = Wire(srv)
    srv.lower_up(0.0)
    [(_, ours)] = wire.out()
    wire.feed(lcp(Code.CONFIGURE_REQUEST, 1, PPPD_LCP))
    wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    assert srv.phase is Phase.AUTHENTICATE
    dropped = srv.dropped
    assert wire.feed(frame(Protocol.IPV6CP, 1, 1, iid_option(WINDOWS_IID))) == []
    assert wire.feed("ff03005760000000") == []
    assert srv.dropped == dropped + 2


def test_ipv6_frames_before_ipv6cp_opens_are_dropped() -> None:
    n = Net6()
    n.ipcp_up()
    n.srv.pop_events()
    dropped = n.srv.dropped
    assert n.wire.feed("ff03005760000000") == []
    assert n.srv.pop_events() == [] and n.srv.dropped == dropped + 1


def test_ipv4_only_server_protocol_rejects_ipv6cp_and_ipv6() -> None:
    n = Net6(assign_prefix=None)
    assert Protocol.IPV6CP not in n.requests and n.prefixes_given == []
    for raw in (frame(Protocol.IPV6CP, 1, 1, iid_option(WINDOWS_IID)), "ff03005760000000"):
        [(protocol, rej)] = n.wire.feed(raw)
        assert protocol == Protocol.LCP and rej.code == Code.PROTOCOL_REJECT
        assert rej.data == bytes.fromhex(raw)[2:]


def test_exhausted_prefix_pool_protocol_rejects_ipv6cp_and_keeps_ipv4() -> None:
    n = Net6(assign_prefix=lambda user: None)
    assert Protocol.IPV6CP not in n.requests and n.srv.prefix is None
    notices = [e for e in n.srv.pop_events() if isinstance(e, Notice)]
    assert any("prefix pool exhausted" in e.message for e in notices)
    [(protocol, rej)] = n.ipv6cp(Code.CONFIGURE_REQUEST, 1, iid_option(WINDOWS_IID))
    assert protocol == Protocol.LCP and rej.code == Code.PROTOCOL_REJECT
    n.ipcp_up()
    assert n.srv.phase is Phase.NETWORK


def test_peer_rejecting_ipv6cp_keeps_the_link_with_ipv4() -> None:
    """pppd without +ipv6 Protocol-Rejects IPV6CP: IPv4 goes on."""
    n = Net6()
    n.ipcp_up()
    ours = n.requests[Protocol.IPV6CP]
    n.wire.feed(lcp(Code.PROTOCOL_REJECT, 9, "8057" + ours.encode().hex()))
    assert n.srv.ipv6cp is not None and n.srv.ipv6cp.state is State.STOPPED
    assert n.srv.phase is Phase.NETWORK and n.srv.is_network_up
    assert not [e for e in n.srv.pop_events() if isinstance(e, LinkDown)]


def test_peer_rejecting_ipcp_keeps_the_link_with_ipv6_then_both_gone_closes() -> None:
    n = Net6()
    n.ipv6cp_up()
    ipcp = n.requests[Protocol.IPCP]
    n.wire.feed(lcp(Code.PROTOCOL_REJECT, 9, "8021" + ipcp.encode().hex()))
    assert n.srv.phase is Phase.NETWORK and n.srv.is_network6_up
    # now the peer terminates IPV6CP too: no NCP left, the link closes
    out = n.ipv6cp(Code.TERMINATE_REQUEST, 7, "")
    assert (Protocol.IPV6CP, Packet(Code.TERMINATE_ACK, 7)) in out
    assert Network6Down() in n.srv.pop_events()
    n.srv.handle_timer(3.0)  # Stopping -> Stopped after the restart timer: finished
    lcp_out = [p for proto, p in n.wire.out() if proto == Protocol.LCP]
    assert [p.code for p in lcp_out] == [Code.TERMINATE_REQUEST]
    assert lcp_out[0].data == b"no network protocol running"


def test_ipv6cp_giving_up_alone_does_not_close_the_link() -> None:
    n = Net6()
    n.ipcp_up()
    for t in range(1, 12):  # 10 unanswered Configure-Requests, 3 s apart
        n.srv.handle_timer(3.0 * t)
        n.wire.out()
    assert n.srv.ipv6cp is not None and n.srv.ipv6cp.state is State.STOPPED
    assert n.srv.phase is Phase.NETWORK and n.srv.is_network_up


def test_lcp_down_reports_network6_down() -> None:
    n = Net6()
    n.ipv6cp_up()
    n.srv.lower_down(1.0)
    events = n.srv.pop_events()
    assert events[0] == Network6Down() and isinstance(events[-1], LinkDown)
    assert not n.srv.is_network6_up


def test_reauthentication_keeps_the_prefix() -> None:
    n = Net6()
    n.ipv6cp_up()
    # the peer renegotiates LCP: a new Configure-Request in Opened
    out = n.wire.feed(lcp(Code.CONFIGURE_REQUEST, 2, PPPD_LCP))
    assert Network6Down() in n.srv.pop_events()
    [ours] = [p for proto, p in out if p.code == Code.CONFIGURE_REQUEST]
    [(_, challenge)] = n.wire.feed(lcp(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    chap_login(n.wire, challenge, "alice", "wonderland")
    assert n.prefixes_given == ["alice"] and n.srv.prefix == PREFIX
    assert n.srv.ipv6cp is not None and n.srv.ipv6cp.state is State.REQ_SENT


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=12)), max_size=5), st.binary())
def test_fuzz_ipv6cp_requests_never_raise(options: list[tuple[int, bytes]], raw: bytes) -> None:
    n = Net6()
    data = encode_options([Option(t, d) for t, d in options if len(d) <= 253]).hex()
    n.ipv6cp(Code.CONFIGURE_REQUEST, 1, data)
    n.wire.feed("ff038057" + raw.hex())
    n.ipv6cp(Code.CONFIGURE_NAK, n.requests[Protocol.IPV6CP].identifier, data)
    assert n.srv.phase is Phase.NETWORK
