"""IPV6CP (RFC 5072): two automata negotiated against each other, and literal peers.

The "Windows" and "pppd" peers are what those stacks put in their Configure-Request:
Windows sends a random Interface-Identifier and nothing else; pppd (``+ipv6``) sends its
own identifier too, and with IPv6 header compression compiled in (``IPV6CP_COMP``) adds an
IPv6-Compression-Protocol option, which we reject. The MikroTik request is the literal one
from docs/protocol/ipv6-dhcp.md §1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.ppp.frame import Code, Option, Packet, decode_options, encode_options
from sstpd.proto.ppp.fsm import Fsm, State
from sstpd.proto.ppp.ipv6cp import (
    OPT_INTERFACE_ID,
    Ipv6cpHandler,
    Ipv6cpListener,
    link_local,
    random_iid,
)

IID_A = bytes.fromhex("0211223344556677")
IID_B = bytes.fromhex("a8bbccddeeff0011")
MIKROTIK_REQUEST = bytes.fromhex("0101000e010af1010343cfea4ffe")


def counter_random(start: int = 1) -> Callable[[int], bytes]:
    counter = itertools.count(start)
    return lambda n: bytes(next(counter) & 0xFF for _ in range(n))


def constant_random(value: bytes) -> Callable[[int], bytes]:
    return lambda n: value[:n]


class End(Ipv6cpListener):
    """One IPV6CP end: a handler, its automaton and the layer events it saw (it is the
    handler's listener)."""

    def __init__(self, name: str, **kwargs: object) -> None:
        self.events: list[str] = []
        kwargs.setdefault("random", counter_random())
        self.handler = Ipv6cpHandler(listener=self, **kwargs)  # type: ignore[arg-type]
        self.sent: list[Packet] = []
        self.fsm = Fsm(name, self.handler, self.sent.append)

    def ipv6cp_up(self) -> None:
        self.events.append("up")

    def ipv6cp_down(self) -> None:
        self.events.append("down")

    def ipv6cp_finished(self) -> None:
        self.events.append("finished")

    def start(self) -> None:
        self.fsm.open(0.0)
        self.fsm.up(0.0)

    def feed(self, packet: Packet | bytes) -> list[Packet]:
        raw = packet.encode() if isinstance(packet, Packet) else packet
        self.fsm.receive(raw, 0.0)
        out, self.sent[:] = list(self.sent), []
        return out


def negotiate(a: End, b: End, rounds: int = 50) -> list[tuple[str, Packet]]:
    """Deliver packets back and forth until both are quiet; returns the transcript."""
    a.start()
    b.start()
    transcript: list[tuple[str, Packet]] = []
    for _ in range(rounds):
        from_a, a.sent[:] = list(a.sent), []
        from_b, b.sent[:] = list(b.sent), []
        if not from_a and not from_b:
            break
        for p in from_a:
            transcript.append((a.fsm.name, p))
            b.fsm.receive(p.encode(), 0.0)
        for p in from_b:
            transcript.append((b.fsm.name, p))
            a.fsm.receive(p.encode(), 0.0)
    return transcript


def iid_of(packet: Packet) -> bytes:
    [opt] = decode_options(packet.data)
    assert opt.type == OPT_INTERFACE_ID
    return opt.data


# --------------------------------------------------------------------------- helpers


def test_link_local_is_fe80_plus_identifier() -> None:
    assert link_local(IID_A) == IPv6Address("fe80::211:2233:4455:6677")
    with pytest.raises(ValueError):
        link_local(b"\x01" * 7)


def test_random_iid_clears_universal_bit_and_avoids_values() -> None:
    iid = random_iid(constant_random(b"\xff" * 8))
    assert iid == bytes.fromhex("fdffffffffffffff")
    iid_c = bytes.fromhex("1000000000000001")
    draws = iter([bytes(8), IID_B, iid_c])
    assert random_iid(lambda n: next(draws), IID_B) == iid_c
    with pytest.raises(RuntimeError):
        random_iid(constant_random(bytes(8)))  # a broken source must not hang us


def test_configured_identifier_must_be_non_zero() -> None:
    with pytest.raises(ValueError):
        End("S", local_iid=bytes(8))
    with pytest.raises(ValueError):
        End("S", local_iid=b"\x01")


# --------------------------------------------------------------------------- two automata


def test_server_and_windows_like_peer_agree_on_each_others_identifier() -> None:
    server = End("server", local_iid=IID_A)
    windows = End("windows", local_iid=IID_B)
    transcript = negotiate(server, windows)
    assert server.fsm.state is State.OPENED and windows.fsm.state is State.OPENED
    assert server.events == ["up"] and windows.events == ["up"]
    assert server.handler.peer_iid == IID_B and windows.handler.peer_iid == IID_A
    assert server.handler.peer_address == IPv6Address("fe80::a8bb:ccdd:eeff:11")
    assert windows.handler.local_address == server.handler.peer_address
    codes = sorted((who, p.code) for who, p in transcript)
    assert codes == [
        ("server", Code.CONFIGURE_REQUEST),
        ("server", Code.CONFIGURE_ACK),
        ("windows", Code.CONFIGURE_REQUEST),
        ("windows", Code.CONFIGURE_ACK),
    ]
    # the requests carry exactly one Interface-Identifier option, length 10
    first = next(p for who, p in transcript if who == "server")
    assert first.data == b"\x01\x0a" + IID_A


class PppdWithCompression(Ipv6cpHandler):
    """pppd built with IPV6CP_COMP: asks for IPHC (0x004f) too, drops it when rejected."""

    IPHC = Option(2, bytes.fromhex("004f000f0fff0fff00ff0000"))

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.want_iphc = True

    def build_request(self) -> list[Option]:
        return super().build_request() + ([self.IPHC] if self.want_iphc else [])

    def request_rejected(self, options: list[Option]) -> bool:
        self.want_iphc = self.want_iphc and self.IPHC not in options
        return super().request_rejected(options)


def test_server_and_pppd_with_header_compression_agree_without_it() -> None:
    server = End("server", local_iid=IID_A)
    pppd = End("pppd", local_iid=IID_B)
    pppd.handler = PppdWithCompression(
        random=counter_random(),
        listener=pppd,
        local_iid=IID_B,
    )
    pppd.fsm.handler = pppd.handler
    transcript = negotiate(server, pppd)
    [reject] = [p for who, p in transcript if p.code == Code.CONFIGURE_REJECT]
    assert decode_options(reject.data) == [PppdWithCompression.IPHC]
    assert server.fsm.state is State.OPENED and pppd.fsm.state is State.OPENED
    assert server.handler.peer_iid == IID_B and pppd.handler.peer_iid == IID_A
    assert pppd.events == ["up"]


def test_identical_identifiers_collide_and_are_resolved_by_naks() -> None:
    # Both ends start with the same identifier: each Naks the other's (RFC 5072 §4.1
    # "equal") with a fresh one and takes the one it is offered.
    server = End("server", local_iid=IID_A, random=counter_random(7))
    peer = End("peer", local_iid=IID_A, random=counter_random(100))
    transcript = negotiate(server, peer)
    assert server.fsm.state is State.OPENED and peer.fsm.state is State.OPENED
    assert any(p.code == Code.CONFIGURE_NAK for _, p in transcript)
    assert server.handler.local_iid != server.handler.peer_iid
    assert server.handler.peer_iid == peer.handler.local_iid
    assert peer.handler.peer_iid == server.handler.local_iid


def test_identifier_in_use_on_another_session_is_naked() -> None:
    taken = {IID_B}
    server = End("server", local_iid=IID_A, in_use=taken.__contains__)
    peer = End("peer", local_iid=IID_B)
    transcript = negotiate(server, peer)
    [nak] = [p for who, p in transcript if who == "server" and p.code == Code.CONFIGURE_NAK]
    assert iid_of(nak) not in (IID_A, IID_B, bytes(8))
    assert server.fsm.state is State.OPENED and peer.fsm.state is State.OPENED
    assert peer.handler.local_iid == iid_of(nak) == server.handler.peer_iid


def test_peer_that_rejects_the_option_leaves_us_with_our_identifier() -> None:
    server = End("server", local_iid=IID_A)
    server.start()
    [request] = server.sent
    server.sent.clear()
    out = server.feed(Packet(Code.CONFIGURE_REJECT, request.identifier, request.data))
    [again] = out
    assert again.code == Code.CONFIGURE_REQUEST and again.data == b""
    server.feed(Packet(Code.CONFIGURE_ACK, again.identifier, b""))
    [ack] = server.feed(Packet(Code.CONFIGURE_REQUEST, 9, Option(1, IID_B).encode()))
    assert ack.code == Code.CONFIGURE_ACK
    assert server.fsm.state is State.OPENED and server.handler.local_iid == IID_A


# --------------------------------------------------------------------------- literal peers


def server_end(**kwargs: object) -> tuple[End, Packet]:
    end = End("server", local_iid=IID_A, **kwargs)
    end.start()
    [request] = end.sent
    end.sent.clear()
    assert request.code == Code.CONFIGURE_REQUEST and iid_of(request) == IID_A
    return end, request


def test_windows_request_is_acked() -> None:
    end, ours = server_end()
    windows = Packet(Code.CONFIGURE_REQUEST, 1, Option(1, IID_B).encode())
    assert end.feed(windows) == [Packet(Code.CONFIGURE_ACK, 1, windows.data)]
    end.feed(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    assert end.fsm.state is State.OPENED and end.events == ["up"]


def test_mikrotik_literal_request_is_acked() -> None:
    end, _ = server_end()
    [ack] = end.feed(MIKROTIK_REQUEST)
    assert ack.encode() == b"\x02" + MIKROTIK_REQUEST[1:]
    assert end.handler.peer_iid == bytes.fromhex("f1010343cfea4ffe")


@pytest.mark.parametrize("bad", [bytes(8), IID_A], ids=["zero", "equal-to-ours"])
def test_zero_or_duplicate_identifier_is_naked_with_a_fresh_one(bad: bytes) -> None:
    end, ours = server_end()
    [nak] = end.feed(Packet(Code.CONFIGURE_REQUEST, 4, Option(1, bad).encode()))
    assert nak.code == Code.CONFIGURE_NAK and nak.identifier == 4
    suggested = iid_of(nak)
    assert suggested not in (bytes(8), IID_A) and not suggested[0] & 0x02
    # the peer takes the suggestion (pppd does) and is acknowledged
    [ack] = end.feed(Packet(Code.CONFIGURE_REQUEST, 5, Option(1, suggested).encode()))
    assert ack.code == Code.CONFIGURE_ACK
    end.feed(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    assert end.fsm.state is State.OPENED
    assert end.handler.peer_iid == suggested


def test_pppd_with_header_compression_gets_it_rejected() -> None:
    end, _ = server_end()
    # Interface-Identifier + IPv6-Compression-Protocol 0x004f (IPHC, RFC 2509 form)
    options = Option(1, IID_B).encode() + bytes.fromhex("020e004f000f0fff0fff00ff0000")
    [rej] = end.feed(Packet(Code.CONFIGURE_REQUEST, 1, options))
    assert rej == Packet(Code.CONFIGURE_REJECT, 1, bytes.fromhex("020e004f000f0fff0fff00ff0000"))
    [ack] = end.feed(Packet(Code.CONFIGURE_REQUEST, 2, Option(1, IID_B).encode()))
    assert ack.code == Code.CONFIGURE_ACK


@pytest.mark.parametrize(
    "option",
    ["0109" + "11" * 7, "010b" + "11" * 9, "0104004f", "7f03ff"],
    ids=["iid-short", "iid-long", "compression", "unknown"],
)
def test_malformed_and_unknown_options_are_rejected(option: str) -> None:
    end, _ = server_end()
    [rej] = end.feed(Packet(Code.CONFIGURE_REQUEST, 3, bytes.fromhex(option)))
    assert rej == Packet(Code.CONFIGURE_REJECT, 3, bytes.fromhex(option))
    assert end.handler.peer_iid is None


def test_request_without_identifier_is_acked_and_leaves_peer_unknown() -> None:
    end, ours = server_end()
    [ack] = end.feed(Packet(Code.CONFIGURE_REQUEST, 1, b""))
    assert ack.code == Code.CONFIGURE_ACK
    end.feed(Packet(Code.CONFIGURE_ACK, ours.identifier, ours.data))
    assert end.fsm.state is State.OPENED and end.handler.peer_address is None


def test_both_zero_is_rejected() -> None:
    # We stopped sending ours (the peer rejected it), so a zero from the peer cannot be
    # resolved by either side: Configure-Reject with the zero value (RFC 5072 §4.1).
    end, ours = server_end()
    [again] = end.feed(Packet(Code.CONFIGURE_REJECT, ours.identifier, ours.data))
    [rej] = end.feed(Packet(Code.CONFIGURE_REQUEST, 2, Option(1, bytes(8)).encode()))
    assert rej == Packet(Code.CONFIGURE_REJECT, 2, Option(1, bytes(8)).encode())
    assert again.data == b""


def test_nak_of_our_identifier_is_followed() -> None:
    end, ours = server_end()
    [again] = end.feed(Packet(Code.CONFIGURE_NAK, ours.identifier, Option(1, IID_B).encode()))
    assert again.code == Code.CONFIGURE_REQUEST and iid_of(again) == IID_B
    assert end.handler.local_address == link_local(IID_B)


def test_nak_suggesting_zero_or_the_peers_identifier_draws_a_fresh_one() -> None:
    end, ours = server_end()
    end.feed(Packet(Code.CONFIGURE_REQUEST, 1, Option(1, IID_B).encode()))
    [again] = end.feed(Packet(Code.CONFIGURE_NAK, ours.identifier, Option(1, IID_B).encode()))
    assert iid_of(again) not in (IID_B, bytes(8))
    [third] = end.feed(Packet(Code.CONFIGURE_NAK, again.identifier, Option(1, bytes(8)).encode()))
    assert iid_of(third) not in (IID_B, bytes(8))


def test_malformed_nak_is_dropped_and_foreign_options_in_a_nak_are_ignored() -> None:
    end, ours = server_end()
    assert end.feed(Packet(Code.CONFIGURE_NAK, ours.identifier, bytes.fromhex("0104abcd"))) == []
    assert end.fsm.dropped == 1
    [again] = end.feed(Packet(Code.CONFIGURE_NAK, ours.identifier, bytes.fromhex("0204004f")))
    assert iid_of(again) == IID_A


def test_unknown_code_is_code_rejected() -> None:
    end, _ = server_end()
    [rej] = end.feed(Packet(9, 1, b"\x00\x00\x00\x00"))
    assert rej.code == Code.CODE_REJECT


def test_layer_down_and_finished_reach_the_listener() -> None:
    server = End("server", local_iid=IID_A)
    peer = End("peer", local_iid=IID_B)
    negotiate(server, peer)
    server.fsm.close(1.0, "bye")
    [term] = server.sent
    server.sent.clear()
    server.feed(Packet(Code.TERMINATE_ACK, term.identifier))
    assert server.events == ["up", "down", "finished"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_handler_never_raises_on_peer_input(payloads: list[bytes]) -> None:
    end, ours = server_end()
    sent: list[Packet] = []
    for payload in payloads:
        for code in (Code.CONFIGURE_REQUEST, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            sent += end.feed(Packet(code, ours.identifier, payload))
        sent += end.feed(payload)
    for nak in (p for p in sent if p.code == Code.CONFIGURE_NAK):
        for opt in decode_options(nak.data):  # we only ever suggest usable identifiers
            assert opt.type == 1 and opt.data not in (bytes(8), end.handler.local_iid)
    opts = encode_options([Option(1, IID_B)])
    [reply] = end.feed(Packet(Code.CONFIGURE_REQUEST, 200, opts))
    assert reply.code in (Code.CONFIGURE_ACK, Code.TERMINATE_ACK) or end.fsm.state in (
        State.STOPPED,
        State.CLOSED,
    )
