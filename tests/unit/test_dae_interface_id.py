"""Framed-Interface-Id (96, RFC 3162 §2.2) as a Disconnect-Request identification attribute
(RFC 5176 §3): 8 bytes read from the request (any other length is an error, never
"absent"), matched against the peer's IPV6CP interface identifier while the session's IPv6
is open (``ServerSession.peer_iid``, the value accounting reports), carried to the workers
in the ``dae`` command, and applied by ``Admin.dae_disconnect`` with the other attributes;
with workers the supervisor's ``DaeFanout`` adds up what each worker ended."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address, IPv6Network
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.aio.admin import Admin
from sstpd.aio.dae import criteria_from_json, criteria_to_json, dae_reply, show_interface_id
from sstpd.aio.supervisor_dae import DaeFanout
from sstpd.proto import aaa, radius
from sstpd.proto.radius import Attr, Code, RadiusPacket

from .test_admin_snapshot import fake_daemon
from .test_dae_ipv6 import fake_connection

SECRET = b"dae-secret"
IID = bytes.fromhex("0211223344556677")
OTHER = bytes.fromhex("a0b1c2d3e4f50617")
P64 = IPv6Network("2001:db8:77:85::/64")


def request(*attrs: tuple[int, bytes]) -> RadiusPacket:
    pkt = RadiusPacket(Code.DISCONNECT_REQUEST, 5, attributes=list(attrs))
    return radius.decode(radius.sign_request(pkt, SECRET))


def iid_attr(iid: bytes) -> tuple[int, bytes]:
    return (Attr.FRAMED_INTERFACE_ID, iid)


# ---------------------------------------------------------------- decode


def test_the_interface_id_alone_names_a_session_and_beside_the_others() -> None:
    c = aaa.disconnect_criteria(request(iid_attr(IID)))
    assert c == aaa.DisconnectCriteria(framed_interface_id=IID) and not c.empty
    both = aaa.disconnect_criteria(
        request((Attr.USER_NAME, b"alice"), iid_attr(IID), (Attr.NAS_IDENTIFIER, b"x"))
    )
    assert both == aaa.DisconnectCriteria(user="alice", framed_interface_id=IID)


@pytest.mark.parametrize("bad", [b"", b"\x02", IID[:7], IID + b"\x00", IID + IID])
def test_an_interface_id_not_8_bytes_is_invalid_not_absent(bad: bytes) -> None:
    """Read as absent, ``User-Name + a 7-byte id`` would end every session of the user."""
    with pytest.raises(aaa.InvalidAttribute, match="malformed Framed-Interface-Id"):
        aaa.disconnect_criteria(request((Attr.USER_NAME, b"alice"), iid_attr(bad)))


@given(st.binary(max_size=20))
def test_decoding_any_value_gives_criteria_or_invalid(value: bytes) -> None:
    try:
        c = aaa.disconnect_criteria(request(iid_attr(value)))
    except aaa.InvalidAttribute:
        assert len(value) != 8
    else:
        assert len(value) == 8 and c.framed_interface_id == value


# ---------------------------------------------------------------- the rule


def matches(c: aaa.DisconnectCriteria, user: str, iid: bytes | None) -> bool:
    return c.matches(user, "sid-1", IPv4Address("10.77.0.5"), P64, iid)


def test_equal_interface_id_matches_a_different_one_does_not() -> None:
    c = aaa.DisconnectCriteria(framed_interface_id=IID)
    assert matches(c, "alice", IID)
    assert not matches(c, "alice", OTHER)
    assert not matches(c, "alice", None)  # no IPv6 (or IPV6CP closed): nothing to match
    # the older call without the interface id (an IPv4-only view) never matches it
    assert not c.matches("alice", "sid-1", IPv4Address("10.77.0.5"), P64)


def test_combined_with_user_name_or_prefix_all_must_match() -> None:
    c = aaa.DisconnectCriteria(user="alice", framed_interface_id=IID)
    assert matches(c, "alice", IID)
    assert not matches(c, "bob", IID)
    assert not matches(c, "alice", OTHER)
    with_prefix = aaa.DisconnectCriteria(framed_ipv6_prefix=P64, framed_interface_id=IID)
    assert with_prefix.matches("alice", "s", None, P64, IID)
    assert not with_prefix.matches("alice", "s", None, IPv6Network("2001:db8:77:86::/64"), IID)


def test_the_other_attributes_still_match_with_no_interface_id_given() -> None:
    c = aaa.DisconnectCriteria(user="alice")
    assert matches(c, "alice", IID) and matches(c, "alice", None)


def test_the_value_accounting_reports_is_the_one_a_disconnect_names() -> None:
    """What a RADIUS server stored from an Interim-Update, sent back, names that session."""
    rec = aaa.AcctRecord(
        "sid-1",
        "alice",
        aaa.ACCT_INTERIM,
        framed_ipv6_prefix=P64,
        framed_interface_id=IID,
    )
    acct, _ = aaa.accounting_request(rec, identifier=1, secret=SECRET, nas=aaa.NasInfo())
    stored = acct.get(Attr.FRAMED_INTERFACE_ID)
    assert stored == IID
    c = aaa.disconnect_criteria(request((Attr.FRAMED_INTERFACE_ID, stored)))
    assert matches(c, "alice", IID)


def test_the_log_shows_it_as_freeradius_writes_it() -> None:
    """FreeRADIUS's ``ifid_ntoa``: 16-bit groups in hex without leading zeros."""
    assert show_interface_id(IID) == "211:2233:4455:6677"
    assert show_interface_id(bytes(8)) == "0:0:0:0"
    assert show_interface_id(None) is None


# ---------------------------------------------------------------- the answer


def test_malformed_interface_id_is_nak_407_and_ends_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[aaa.DisconnectCriteria] = []

    def disconnect(c: aaa.DisconnectCriteria) -> int:
        asked.append(c)
        return 1

    pkt = request((Attr.USER_NAME, b"alice"), iid_attr(IID[:7]))
    with caplog.at_level(logging.INFO, logger="sstpd.radius"):
        raw = dae_reply(pkt, SECRET, disconnect, "192.0.2.9")
    assert isinstance(raw, bytes)
    nak = radius.decode(raw)
    assert nak.code == Code.DISCONNECT_NAK
    assert nak.get_int(Attr.ERROR_CAUSE) == radius.ERROR_INVALID_ATTRIBUTE_VALUE == 407
    assert asked == []
    assert "malformed Framed-Interface-Id 02112233445566: NAK" in caplog.text


def test_interface_id_alone_reaches_disconnect_and_no_match_is_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[aaa.DisconnectCriteria] = []

    def disconnect(c: aaa.DisconnectCriteria) -> int:
        asked.append(c)
        return 1 if c.framed_interface_id == IID else 0

    with caplog.at_level(logging.INFO, logger="sstpd.radius"):
        ack = dae_reply(request(iid_attr(IID)), SECRET, disconnect, "h")
        nak = dae_reply(request(iid_attr(OTHER)), SECRET, disconnect, "h")
    assert isinstance(ack, bytes) and isinstance(nak, bytes)
    assert radius.decode(ack).code == Code.DISCONNECT_ACK
    assert radius.decode(nak).code == Code.DISCONNECT_NAK
    assert radius.decode(nak).get_int(Attr.ERROR_CAUSE) == radius.ERROR_SESSION_NOT_FOUND
    assert [a.framed_interface_id for a in asked] == [IID, OTHER]
    assert "for interface-id=211:2233:4455:6677: 1 sessions ended" in caplog.text


# ---------------------------------------------------------------- to the workers


def test_the_interface_id_travels_in_the_dae_command() -> None:
    c = aaa.DisconnectCriteria(user="alice", framed_interface_id=IID)
    sent = criteria_to_json(c)
    assert sent == {
        "user": "alice",
        "session_id": None,
        "framed_ip": None,
        "framed_ipv6_prefix": None,
        "framed_interface_id": "0211223344556677",
    }
    assert criteria_from_json({"cmd": "dae", **sent}) == c
    assert criteria_from_json({"framed_interface_id": IID.hex()}) == aaa.DisconnectCriteria(
        framed_interface_id=IID
    )
    for bad in (
        {"framed_interface_id": 7},
        {"framed_interface_id": "not hex"},
        {"framed_interface_id": IID[:7].hex()},  # the worker never widens a bad one either
        {"framed_interface_id": (IID + b"\x00").hex()},
    ):
        with pytest.raises(ValueError):
            criteria_from_json(bad)


# ---------------------------------------------------------------- in the workers


def worker_admin(*sessions: tuple[int, str, bytes | None, bool]) -> tuple[Admin, list[int]]:
    """A worker's Admin over fake connections ``(id, user, peer_iid, is_open)``."""
    ended: list[int] = []

    def conn(i: int, user: str, iid: bytes | None, is_open: bool) -> Any:
        prefix6 = IPv6Network(f"2001:db8:77:{i}::/64") if iid is not None else None
        return fake_connection(ended, i, user, prefix6, iid, is_open)

    d = fake_daemon()
    d.server.connections = [conn(*s) for s in sessions]
    return Admin(d), ended


def test_a_worker_ends_exactly_the_session_with_that_interface_id() -> None:
    admin, ended = worker_admin(
        (1, "alice", IID, True),
        (2, "alice", OTHER, True),
        (3, "bob", None, True),  # IPv4 only (or IPV6CP closed)
        (4, "carol", IID, False),  # closing: not a session any more
    )
    answer = admin.handle_control({"cmd": "dae", "framed_interface_id": IID.hex()})
    assert answer == {"ok": True, "ended": 1} and ended == [1]
    for other in (
        {"framed_interface_id": "0000000000000001"},
        {"user": "bob", "framed_interface_id": OTHER.hex()},
    ):
        assert admin.handle_control({"cmd": "dae", **other}) == {"ok": True, "ended": 0}, other
    assert ended == [1]
    answer = admin.handle_control(
        {"cmd": "dae", "user": "alice", "framed_interface_id": OTHER.hex()}
    )
    assert answer == {"ok": True, "ended": 1} and ended == [1, 2]


def test_with_workers_the_supervisor_asks_each_and_adds_up() -> None:
    """The session with the id is on worker 1: worker 0 ends nothing, the answer is 1."""
    admins = [
        worker_admin((1, "alice", OTHER, True)),
        worker_admin((2, "alice", IID, True), (3, "bob", None, True)),
    ]
    asked: list[dict[str, Any]] = []

    async def ask_all(req: dict[str, Any]) -> list[tuple[Any, dict[str, Any] | None]]:
        asked.append(req)
        return [
            (SimpleNamespace(index=w), admin.handle_control(dict(req)))
            for w, (admin, _) in enumerate(admins)
        ]

    fanout = DaeFanout(SimpleNamespace(ask_all=ask_all))  # type: ignore[arg-type]
    ended = asyncio.run(fanout.disconnect(aaa.DisconnectCriteria(framed_interface_id=IID)))
    assert ended == 1
    assert [a[1] for a in admins] == [[], [2]]
    assert asked == [
        {
            "cmd": "dae",
            "user": None,
            "session_id": None,
            "framed_ip": None,
            "framed_ipv6_prefix": None,
            "framed_interface_id": IID.hex(),
        }
    ]
