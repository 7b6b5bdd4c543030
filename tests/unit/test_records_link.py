"""sstpd.records_link: the worker link's ``dae``, ``acme-challenge`` and ``traffic``
requests and answers. Round trips through the link's own codec (``sstpd.control`` JSON lines), the
keys the other side reads, what a malformed request or answer does (RecordError naming
the key, never quoting a private key), and hypothesis over arbitrary JSON."""

from __future__ import annotations

import json
import logging
from ipaddress import IPv4Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd import acmeclient
from sstpd.aio.workers_link import LINK_COMMANDS, worker_answer, worker_record
from sstpd.control import decode_request, encode
from sstpd.proto.aaa import DisconnectCriteria
from sstpd.records import RecordError, sessions_from_json
from sstpd.records_link import (
    MAX_NAME,
    ChallengeRecord,
    ChallengeRequest,
    DaeRecord,
    DaeRequest,
    SessionTraffic,
    traffic_from_json,
    traffic_to_json,
)

KEY_MARK = "PRIVATE KEY-----"


def link(req: dict[str, Any]) -> dict[str, Any]:
    """What the worker reads: the request framed and decoded as the link does."""
    return decode_request(encode(req).rstrip(b"\n"), LINK_COMMANDS)


def wire(obj: dict[str, Any]) -> Any:
    """What the supervisor reads of an answer: the JSON text parsed again."""
    return json.loads(json.dumps(obj))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)

# ---------------------------------------------------------------------------- dae

criteria = st.builds(
    DisconnectCriteria,
    user=st.none() | st.text(max_size=30),
    session_id=st.none() | st.text(max_size=30),
    framed_ip=st.none() | st.ip_addresses(v=4),
    framed_ipv6_prefix=st.none()
    | st.builds(
        lambda a, n: IPv6Network((int(a) >> (128 - n) << (128 - n), n)),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
    framed_interface_id=st.none() | st.binary(min_size=8, max_size=8),
).filter(lambda c: not c.empty)


@given(criteria)
def test_dae_request_round_trip_through_the_link(c: DisconnectCriteria) -> None:
    req = DaeRequest.of(c).to_request()
    assert req["cmd"] == "dae"
    got = DaeRequest.from_json(link(req))
    assert got == DaeRequest.of(c) and got.criteria() == c


def test_dae_request_keys_the_worker_reads() -> None:
    c = DisconnectCriteria(user="bob", framed_ipv6_prefix=IPv6Network("2001:db8:77:85::/64"))
    assert DaeRequest.of(c).to_request() == {
        "cmd": "dae",
        "user": "bob",
        "session_id": None,
        "framed_ip": None,
        "framed_ipv6_prefix": "2001:db8:77:85::/64",
        "framed_interface_id": None,
    }
    # keys left out are not given (None)
    assert DaeRequest.from_json({"framed_ip": "10.0.0.2"}).criteria() == DisconnectCriteria(
        framed_ip=IPv4Address("10.0.0.2")
    )


@pytest.mark.parametrize(
    "req, reason",
    [
        ({}, "names no session"),
        ({"user": None, "framed_ip": None}, "names no session"),
        ({"user": 5}, r"DaeRequest\.user: int"),
        ({"session_id": ["a"]}, r"DaeRequest\.session_id: list"),
        ({"framed_ip": True}, r"DaeRequest\.framed_ip: bool"),
        ({"framed_ip": "not-an-address"}, r"DaeRequest\.framed_ip: .* is not IPv4"),
        ({"framed_ip": "2001:db8::1"}, r"DaeRequest\.framed_ip: .* is not IPv4"),
        ({"framed_ipv6_prefix": 64}, r"DaeRequest\.framed_ipv6_prefix: int"),
        ({"framed_ipv6_prefix": "2001:db8:77:85::1/64"}, r"framed_ipv6_prefix: .* IPv6 network"),
        ({"framed_ipv6_prefix": "10.0.0.0/8"}, r"framed_ipv6_prefix: .* IPv6 network"),
        ({"framed_interface_id": 7}, r"DaeRequest\.framed_interface_id: int"),
        ({"framed_interface_id": "not hex"}, r"framed_interface_id: .* is not 8 bytes"),
        ({"framed_interface_id": "02112233445566"}, r"framed_interface_id: .* is not 8 bytes"),
        ({"framed_interface_id": "021122334455667788"}, r"is not 8 bytes"),
    ],
)
def test_malformed_dae_requests_name_the_key(req: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        DaeRequest.from_json({"cmd": "dae", **req})


def test_a_dae_request_that_is_not_an_object() -> None:
    objs: tuple[object, ...] = (None, [], "dae", 3)
    for obj in objs:
        with pytest.raises(RecordError, match="not a JSON object"):
            DaeRequest.from_json(obj)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["user", "session_id", "framed_ip", "framed_ipv6_prefix", "framed_interface_id", "x"]
        ),
        json_values | st.ip_addresses().map(str) | st.binary(max_size=10).map(bytes.hex),
    )
)
def test_dae_request_fuzz(req: dict[str, Any]) -> None:
    """Anything: RecordError, or a request naming a session that reads back the same."""
    try:
        rec = DaeRequest.from_json(req)
    except RecordError:
        return
    c = rec.criteria()
    assert not c.empty
    assert DaeRequest.from_json(link(DaeRequest.of(c).to_request())).criteria() == c


@given(st.integers(0, 2**62))
def test_dae_answer_round_trip(n: int) -> None:
    rec = DaeRecord(ended=n)
    assert rec.to_json() == {"ended": n}
    assert DaeRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@pytest.mark.parametrize(
    "answer, reason",
    [
        ({"ok": True}, "no 'ended'"),
        ({"ended": "1"}, r"DaeRecord\.ended: str"),
        ({"ended": True}, r"DaeRecord\.ended: bool"),
        ({"ended": 1.5}, r"DaeRecord\.ended: float"),
        ({"ended": -1}, "negative"),
        ([], "not a JSON object"),
    ],
)
def test_malformed_dae_answers(answer: Any, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        DaeRecord.from_json(answer)


# ---------------------------------------------------------------------------- acme-challenge

NAME = "vpn.example.test"
names = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-.ABC"), min_size=1, max_size=MAX_NAME
)
pem_bodies = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
installs = st.builds(
    ChallengeRequest,
    name=names,
    cert=pem_bodies.map(lambda b: f"-----BEGIN CERTIFICATE-----\n{b}\n"),
    key=pem_bodies.map(lambda b: f"-----BEGIN PRIVATE KEY-----\n{b}\n"),
)
removals = st.builds(ChallengeRequest, name=names)


@given(installs | removals)
def test_challenge_request_round_trip_through_the_link(rec: ChallengeRequest) -> None:
    req = link(rec.to_request())
    assert req["cmd"] == "acme-challenge"
    assert ChallengeRequest.from_json(req) == rec


def test_challenge_request_from_real_pems_and_its_removal() -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, "token.thumbprint")
    rec = ChallengeRequest.of(NAME, cert_pem, key_pem)
    assert rec.pems == (cert_pem, key_pem)
    assert ChallengeRequest.from_json(link(rec.to_request())).pems == (cert_pem, key_pem)
    # a removal carries the name only; one PEM without the other is a removal too
    assert ChallengeRequest.of(NAME).to_request() == {"cmd": "acme-challenge", "name": NAME}
    assert ChallengeRequest.of(NAME, cert_pem, None).pems is None
    # the key is never shown
    assert KEY_MARK not in repr(rec) and "BEGIN CERTIFICATE" in repr(rec)


@pytest.mark.parametrize(
    "req, reason",
    [
        ({}, '"name"'),
        ({"name": ""}, '"name"'),
        ({"name": 5}, '"name"'),
        ({"name": "x" * (MAX_NAME + 1)}, '"name"'),
        ({"name": "vpn.exämple"}, '"name"'),
        ({"name": NAME, "cert": "-----BEGIN CERTIFICATE-----"}, '"key"'),
        ({"name": NAME, "key": "-----BEGIN PRIVATE KEY-----"}, '"cert"'),
        ({"name": NAME, "cert": "junk", "key": "-----BEGIN PRIVATE KEY-----"}, '"cert"'),
        ({"name": NAME, "cert": "-----BEGIN CERTIFICATE-----", "key": 7}, '"key"'),
        ({"name": NAME, "cert": "-----BEGIN CERTIFICATE-----", "key": [f"-- {KEY_MARK}"]}, '"key"'),
        (
            {"name": NAME, "cert": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PUBLIC KEY"},
            '"key"',
        ),
    ],
)
def test_malformed_challenge_requests_never_quote_the_key(req: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError, match=reason) as info:
        ChallengeRequest.from_json({"cmd": "acme-challenge", **req})
    assert KEY_MARK not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "cert", "key", "other"]),
        json_values | pem_bodies.map(lambda b: f"-----BEGIN {KEY_MARK}{b}"),
    )
)
def test_challenge_request_fuzz(req: dict[str, Any]) -> None:
    try:
        rec = ChallengeRequest.from_json(req)
    except RecordError as exc:
        assert KEY_MARK not in str(exc)
        return
    assert 0 < len(rec.name) <= MAX_NAME and rec.name.isascii()
    assert (rec.cert is None) == (rec.key is None)
    assert ChallengeRequest.from_json(link(rec.to_request())) == rec


@given(st.lists(names, max_size=4).map(lambda xs: tuple(sorted(x.lower() for x in xs))))
def test_challenge_answer_round_trip(pending: tuple[str, ...]) -> None:
    rec = ChallengeRecord(pending=pending)
    assert rec.to_json() == {"pending": list(pending)}
    assert ChallengeRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@pytest.mark.parametrize(
    "answer, reason",
    [
        ({"ok": True}, "no 'pending'"),
        ({"pending": NAME}, r"ChallengeRecord\.pending: str"),
        ({"pending": [NAME, 3]}, r"ChallengeRecord\.pending\[1\]: int"),
        ({"pending": None}, r"ChallengeRecord\.pending: NoneType"),
    ],
)
def test_malformed_challenge_answers(answer: Any, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        ChallengeRecord.from_json(answer)


# ---------------------------------------------------------------------------- the reader


def test_worker_answer_logs_a_malformed_answer_and_counts_it_as_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sstpd")
    assert worker_record(DaeRecord, 1, {"ok": True, "ended": 2}) == DaeRecord(ended=2)
    assert worker_record(DaeRecord, 1, None) is None  # not running: nothing logged
    assert worker_record(DaeRecord, 1, {"ok": False, "error": "x"}) is None  # a refusal
    assert caplog.records == []
    assert worker_record(DaeRecord, 1, {"ok": True, "ended": "2"}) is None
    assert worker_answer(sessions_from_json, 0, {"ok": True, "sessions": [{"id": 1}]}) is None
    assert worker_answer(sessions_from_json, 0, {"ok": True}) is None
    got = [r.getMessage() for r in caplog.records]
    assert got == [
        "worker 1: unexpected answer: DaeRecord.ended: str '2' is not int",
        "worker 0: unexpected answer: SessionRecord: no 'user'",
        'worker 0: unexpected answer: sessions: no "sessions" list',
    ]


# ---------------------------------------------------------------------------- traffic

counts = st.integers(0, 2**63)
traffic_rows = st.lists(st.builds(SessionTraffic, counts, counts, counts, counts, counts))


@given(traffic_rows)
def test_traffic_answer_round_trip_through_the_link(rows: list[SessionTraffic]) -> None:
    answer = wire({"ok": True, **traffic_to_json(rows)})
    assert traffic_from_json(answer) == rows
    assert "traffic" in LINK_COMMANDS and link({"cmd": "traffic"}) == {"cmd": "traffic"}


@pytest.mark.parametrize(
    "answer, reason",
    [
        ({"ok": True}, 'no "traffic" list'),
        ({"ok": True, "traffic": {"1": [1, 2, 3, 4]}}, 'no "traffic" list'),
        ([[1, 2, 3, 4, 5]], 'no "traffic" list'),
        ({"traffic": [[1, 2, 3, 4]]}, "traffic[0]"),
        ({"traffic": [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]}, "traffic[1]"),
        ({"traffic": [[1, 2, 3, 4, -5]]}, "traffic[0]"),
        ({"traffic": [[1, 2, True, 4, 5]]}, "traffic[0]"),
        ({"traffic": [[1, 2, 3.0, 4, 5]]}, "traffic[0]"),
        ({"traffic": [[1, 2, "3", 4, 5]]}, "traffic[0]"),
        ({"traffic": [{"id": 1}]}, "traffic[0]"),
    ],
)
def test_malformed_traffic_answers_name_the_row(answer: Any, reason: str) -> None:
    with pytest.raises(RecordError, match=reason.replace("[", r"\[")):
        traffic_from_json(answer)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["ok", "traffic"]), json_values))
def test_traffic_answer_fuzz(answer: dict[str, Any]) -> None:
    try:
        rows = traffic_from_json(answer)
    except RecordError:
        return
    assert all(len(r) == 5 and min(r) >= 0 for r in rows)
