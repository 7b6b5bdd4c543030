"""Framed-IPv6-Prefix (97) as a Disconnect-Request identification attribute (RFC 5176 §3):
read from the request (FreeRADIUS's short form and the full 16 bytes; malformed is an
error, never "absent"), matched against the session's /64 (equal only; another length
matches nothing), carried to the workers in the ``dae`` command, and applied by
``Admin.dae_disconnect`` together with the other attributes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.aio.admin import Admin
from sstpd.aio.dae import criteria_from_json, criteria_to_json, dae_reply
from sstpd.proto import aaa, radius
from sstpd.proto.radius import Attr, Code, RadiusPacket

from .test_admin_snapshot import fake_daemon

SECRET = b"dae-secret"
P64 = IPv6Network("2001:db8:77:85::/64")
OTHER64 = IPv6Network("2001:db8:77:86::/64")


def request(*attrs: tuple[int, bytes]) -> RadiusPacket:
    pkt = RadiusPacket(Code.DISCONNECT_REQUEST, 3, attributes=list(attrs))
    return radius.decode(radius.sign_request(pkt, SECRET))


def prefix_attr(prefix: IPv6Network) -> tuple[int, bytes]:
    return (Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(prefix))


# ---------------------------------------------------------------- decode


def test_the_prefix_is_read_in_freeradius_short_form_and_in_full() -> None:
    short = request(prefix_attr(P64))
    assert short.get(Attr.FRAMED_IPV6_PREFIX) == bytes([0, 64]) + P64.network_address.packed[:8]
    assert aaa.disconnect_criteria(short) == aaa.DisconnectCriteria(framed_ipv6_prefix=P64)
    full = request((Attr.FRAMED_IPV6_PREFIX, bytes([0, 64]) + P64.network_address.packed))
    assert aaa.disconnect_criteria(full).framed_ipv6_prefix == P64


def test_the_prefix_alone_names_a_session_and_beside_the_others() -> None:
    c = aaa.disconnect_criteria(request(prefix_attr(P64)))
    assert not c.empty
    both = aaa.disconnect_criteria(
        request((Attr.USER_NAME, b"alice"), prefix_attr(P64), (Attr.NAS_IDENTIFIER, b"x"))
    )
    assert both == aaa.DisconnectCriteria(user="alice", framed_ipv6_prefix=P64)


def test_another_length_is_read_as_given() -> None:
    """Not widened or narrowed to a /64 on the way in: the match refuses it."""
    wide = IPv6Network("2001:db8:77::/56")
    assert aaa.disconnect_criteria(request(prefix_attr(wide))).framed_ipv6_prefix == wide


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\x40\x20\x01",  # a /64 in 2 bytes
        b"\x00\x81" + bytes(16),  # length over 128
        b"\x01\x40" + bytes(8),  # reserved byte set
        b"\x00\x30" + bytes.fromhex("20010db80077ffff"),  # bits past the length
        b"\x00",
    ],
)
def test_a_malformed_prefix_is_invalid_not_absent(bad: bytes) -> None:
    """Read as absent, ``User-Name + bad prefix`` would end every session of the user."""
    with pytest.raises(aaa.InvalidAttribute, match="malformed Framed-IPv6-Prefix"):
        aaa.disconnect_criteria(request((Attr.USER_NAME, b"alice"), (Attr.FRAMED_IPV6_PREFIX, bad)))


@pytest.mark.parametrize("bad", [b"\x0a\x4d\x00", b"\x0a\x4d\x00\x05\x01", b"\x00"])
def test_a_malformed_framed_ip_address_is_invalid_not_absent(bad: bytes) -> None:
    """The same for IPv4: ``User-Name + a 3-byte Framed-IP-Address`` must end nothing."""
    with pytest.raises(aaa.InvalidAttribute, match="malformed Framed-IP-Address"):
        aaa.disconnect_criteria(request((Attr.USER_NAME, b"alice"), (Attr.FRAMED_IP_ADDRESS, bad)))


def test_malformed_framed_ip_address_is_nak_407_and_ends_nothing() -> None:
    asked: list[aaa.DisconnectCriteria] = []

    def disconnect(c: aaa.DisconnectCriteria) -> int:
        asked.append(c)
        return 1

    pkt = request((Attr.USER_NAME, b"alice"), (Attr.FRAMED_IP_ADDRESS, b"\x0a\x4d\x00"))
    nak = radius.decode(dae_reply(pkt, SECRET, disconnect, "192.0.2.9"))  # type: ignore[arg-type]
    assert nak.code == Code.DISCONNECT_NAK
    assert nak.get_int(Attr.ERROR_CAUSE) == 407
    assert asked == []


@given(st.binary(max_size=20))
def test_decoding_any_value_gives_criteria_or_invalid(value: bytes) -> None:
    try:
        c = aaa.disconnect_criteria(request((Attr.FRAMED_IPV6_PREFIX, value)))
    except aaa.InvalidAttribute:
        assert radius.decode_ipv6_prefix(value) is None
    else:
        assert c.framed_ipv6_prefix == radius.decode_ipv6_prefix(value)


# ---------------------------------------------------------------- the rule


def matches(c: aaa.DisconnectCriteria, user: str, prefix6: IPv6Network | None) -> bool:
    return c.matches(user, "sid-1", IPv4Address("10.77.0.5"), prefix6)


def test_equal_prefix_matches_a_different_one_does_not() -> None:
    c = aaa.DisconnectCriteria(framed_ipv6_prefix=P64)
    assert matches(c, "alice", P64)
    assert not matches(c, "alice", OTHER64)
    assert not matches(c, "alice", None)  # no IPv6 (or IPV6CP closed): nothing to match


@pytest.mark.parametrize("length", [0, 48, 56, 60, 63, 65, 96, 128])
def test_a_length_other_than_64_matches_nothing(length: int) -> None:
    """Even a prefix holding the session's /64 (or inside it) names no session."""
    given_prefix = IPv6Network((P64.network_address, length), strict=False)
    c = aaa.DisconnectCriteria(framed_ipv6_prefix=given_prefix)
    assert not matches(c, "alice", P64)
    assert not matches(c, "alice", given_prefix)  # not even a session "holding" it


def test_combined_with_user_name_both_must_match() -> None:
    c = aaa.DisconnectCriteria(user="alice", framed_ipv6_prefix=P64)
    assert matches(c, "alice", P64)
    assert not matches(c, "bob", P64)
    assert not matches(c, "alice", OTHER64)
    assert not aaa.DisconnectCriteria(user="alice", framed_ipv6_prefix=P64).matches(
        "alice", "sid-1", None
    )  # the IPv4-only signature: no prefix, no match


def test_the_other_attributes_still_match_with_no_prefix_given() -> None:
    c = aaa.DisconnectCriteria(user="alice", framed_ip=IPv4Address("10.77.0.5"))
    assert matches(c, "alice", P64) and matches(c, "alice", None)


# ---------------------------------------------------------------- to the workers


def test_the_prefix_travels_in_the_dae_command() -> None:
    c = aaa.DisconnectCriteria(user="alice", framed_ipv6_prefix=P64)
    sent = criteria_to_json(c)
    assert sent == {
        "user": "alice",
        "session_id": None,
        "framed_ip": None,
        "framed_ipv6_prefix": "2001:db8:77:85::/64",
        "framed_interface_id": None,
    }
    assert criteria_from_json({"cmd": "dae", **sent}) == c
    wide = aaa.DisconnectCriteria(framed_ipv6_prefix=IPv6Network("2001:db8:77::/56"))
    assert criteria_from_json(criteria_to_json(wide)) == wide  # the worker refuses it itself
    assert criteria_from_json({"framed_ipv6_prefix": str(P64)}) == aaa.DisconnectCriteria(
        framed_ipv6_prefix=P64
    )
    for bad in ({"framed_ipv6_prefix": 64}, {"framed_ipv6_prefix": "2001:db8:77:85::1/64"}):
        with pytest.raises(ValueError):
            criteria_from_json(bad)


# ---------------------------------------------------------------- the answer


def test_malformed_prefix_is_nak_407_and_ends_nothing() -> None:
    asked: list[aaa.DisconnectCriteria] = []

    def disconnect(c: aaa.DisconnectCriteria) -> int:
        asked.append(c)
        return 1

    pkt = request((Attr.USER_NAME, b"alice"), (Attr.FRAMED_IPV6_PREFIX, b"\x00\x40\x20\x01"))
    raw = dae_reply(pkt, SECRET, disconnect, "192.0.2.9")
    assert isinstance(raw, bytes)
    nak = radius.decode(raw)
    assert nak.code == Code.DISCONNECT_NAK
    assert nak.get_int(Attr.ERROR_CAUSE) == radius.ERROR_INVALID_ATTRIBUTE_VALUE == 407
    assert asked == []


def test_prefix_alone_reaches_disconnect_and_no_match_is_503() -> None:
    asked: list[aaa.DisconnectCriteria] = []

    def disconnect(c: aaa.DisconnectCriteria) -> int:
        asked.append(c)
        return 1 if c.framed_ipv6_prefix == P64 else 0

    ack = dae_reply(request(prefix_attr(P64)), SECRET, disconnect, "h")
    nak = dae_reply(request(prefix_attr(OTHER64)), SECRET, disconnect, "h")
    assert isinstance(ack, bytes) and isinstance(nak, bytes)
    assert radius.decode(ack).code == Code.DISCONNECT_ACK
    assert radius.decode(nak).code == Code.DISCONNECT_NAK
    assert radius.decode(nak).get_int(Attr.ERROR_CAUSE) == radius.ERROR_SESSION_NOT_FOUND
    assert [a.framed_ipv6_prefix for a in asked] == [P64, OTHER64]


# ---------------------------------------------------------------- in a worker


def fake_connection(
    ended: list[int],
    i: int,
    user: str,
    prefix6: IPv6Network | None,
    peer_iid: bytes | None = None,
    is_open: bool = True,
) -> Any:
    """What ``Admin.dae_disconnect`` reads of a worker's connection; ending it appends
    its id to ``ended``."""
    c = SimpleNamespace(
        id=i,
        is_open=is_open,
        peer="p",
        acct_session_id=f"sid-{i}",
        session=SimpleNamespace(
            username=user,
            peer_address=IPv4Address(f"10.77.0.{i}"),
            prefix6=prefix6,
            peer_iid=peer_iid,
        ),
    )
    c.disconnect = lambda why: ended.append(i)
    return c


def worker_admin() -> tuple[Admin, list[int]]:
    ended: list[int] = []
    conns = [
        fake_connection(ended, 1, "alice", P64),
        fake_connection(ended, 2, "alice", OTHER64),
        fake_connection(ended, 3, "bob", None),  # IPv4 only
        fake_connection(ended, 4, "carol", P64, is_open=False),  # closing: not a session
    ]
    d = fake_daemon()
    d.server.connections = conns
    return Admin(d), ended


def test_a_worker_ends_exactly_the_session_holding_the_64() -> None:
    admin, ended = worker_admin()
    answer = admin.handle_control({"cmd": "dae", "framed_ipv6_prefix": str(P64)})
    assert answer == {"ok": True, "ended": 1} and ended == [1]
    for other in (
        {"framed_ipv6_prefix": "2001:db8:77::/56"},  # holds both /64s: names neither
        {"framed_ipv6_prefix": "2001:db8:77:85::/128"},
        {"framed_ipv6_prefix": "2001:db8:77:87::/64"},
        {"user": "bob", "framed_ipv6_prefix": str(P64)},
    ):
        assert admin.handle_control({"cmd": "dae", **other}) == {"ok": True, "ended": 0}, other
    assert ended == [1]
    both = {"user": "alice", "framed_ipv6_prefix": str(OTHER64)}
    answer = admin.handle_control({"cmd": "dae", **both})
    assert answer == {"ok": True, "ended": 1} and ended == [1, 2]
