"""Delegated-IPv6-Prefix (123, RFC 4818) in an Access-Accept: sstpd does no DHCPv6 prefix
delegation, so it is not applied, and the admin is told so, once per session, with the
attribute named and never a secret (``aaa.delegated_note``, ``Aaa._radius_verify``). The
RADIUS server is a scripted UDP peer on 127.0.0.1 and the Accept goes through the real
client, its checks and the Grant."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv6Network
from types import SimpleNamespace
from typing import Any

import pytest

from sstpd.aio.aaa import Aaa
from sstpd.config import AuthConfig, Config, RadiusConfig, RadiusServer
from sstpd.proto import aaa, radius
from sstpd.proto.ppp.auth import PAP, Verdict, VerifyRequest
from sstpd.proto.radius import Attr, Code, RadiusPacket

from .test_radius_client import start_peer

SECRET = b"the-shared-secret"
PASSWORD = "pap-password-never-logged"
DELEGATED = IPv6Network("2001:db8:900::/56")
FRAMED6 = IPv6Network("2001:db8:77:85::/64")


def accept_with(*attrs: tuple[int, bytes]) -> Any:
    def answer(req: RadiusPacket, _raw: bytes) -> bytes:
        pkt = RadiusPacket(Code.ACCESS_ACCEPT, req.identifier, attributes=list(attrs))
        return radius.sign_reply(pkt, req.authenticator, SECRET)

    return answer


# ---------------------------------------------------------------- the Grant and the note


def test_the_accepts_delegated_prefixes_are_kept_as_sent_and_noted() -> None:
    pkt = RadiusPacket(Code.ACCESS_ACCEPT, 1)
    pkt.add(Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(FRAMED6))
    pkt.add(Attr.DELEGATED_IPV6_PREFIX, radius.encode_ipv6_prefix(DELEGATED))
    pkt.add(Attr.DELEGATED_IPV6_PREFIX, b"\x00\x40\x20")  # malformed: 1 of 8 bytes
    grant = aaa._grant(pkt)
    assert grant.framed_ipv6_prefix == FRAMED6  # what sstpd does apply is unchanged
    assert grant.delegated_ipv6_prefixes == (
        radius.encode_ipv6_prefix(DELEGATED),
        b"\x00\x40\x20",
    )
    note = aaa.delegated_note(grant)
    assert note is not None
    assert note.startswith("Delegated-IPv6-Prefix (123) 2001:db8:900::/56, malformed 004020 ")
    assert "not supported" in note and "no DHCPv6 prefix delegation" in note


def test_no_attribute_no_note() -> None:
    assert aaa.delegated_note(aaa._grant(RadiusPacket(Code.ACCESS_ACCEPT, 1))) is None
    assert aaa.delegated_note(aaa.Grant()) is None


# ---------------------------------------------------------------- through the daemon's Aaa


class FakeSession:
    closed = False

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    def complete_verification(self, req: VerifyRequest, verdict: Verdict, now: float) -> None:
        self.verdicts.append(verdict)


def host(i: int) -> Any:
    return SimpleNamespace(
        id=i,
        peer=f"192.0.2.{i}:40000",
        peer_host=f"192.0.2.{i}",
        session=FakeSession(),
        grant=None,
        _after_input=lambda: None,
    )


async def login(a: Aaa, h: Any, user: str) -> Verdict:
    verify = a.verifier(h)
    assert verify(VerifyRequest(PAP, user, user, password=PASSWORD)) is None  # asks RADIUS
    while not h.session.verdicts:
        await asyncio.sleep(0.01)
    [verdict] = h.session.verdicts
    assert isinstance(verdict, Verdict)
    return verdict


def run_logins(answer: Any, users: list[str]) -> tuple[list[Any], list[Verdict]]:
    async def main() -> tuple[list[Any], list[Verdict]]:
        _peer, port = await start_peer(answer)
        config = Config(
            auth=AuthConfig(backends=("radius",)),
            radius=RadiusConfig(servers=(RadiusServer("127.0.0.1", port, SECRET),), timeout=2.0),
        )
        a = Aaa(config, lambda _user: None)
        await a.open()
        hosts = [host(i + 1) for i in range(len(users))]
        verdicts = [await login(a, h, u) for h, u in zip(hosts, users, strict=True)]
        a.close()
        return hosts, verdicts

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_one_warning_per_session_naming_the_attribute(caplog: pytest.LogCaptureFixture) -> None:
    answer = accept_with(
        (Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(FRAMED6)),
        (Attr.DELEGATED_IPV6_PREFIX, radius.encode_ipv6_prefix(DELEGATED)),
    )
    with caplog.at_level(logging.DEBUG):
        hosts, verdicts = run_logins(answer, ["alice", "bob"])
    assert all(v.success for v in verdicts)  # the login itself is not affected
    assert all(h.grant.framed_ipv6_prefix == FRAMED6 for h in hosts)  # nor the /64
    warnings = [r for r in caplog.records if "Delegated-IPv6-Prefix" in r.getMessage()]
    assert [(r.levelno, r.getMessage().split(" ", 1)[0]) for r in warnings] == [
        (logging.WARNING, "[1]"),
        (logging.WARNING, "[2]"),
    ]
    text = warnings[0].getMessage()
    assert text.startswith("[1] 192.0.2.1:40000 RADIUS Access-Accept: Delegated-IPv6-Prefix")
    assert "2001:db8:900::/56" in text and "ignored: not supported" in text
    # no secret in anything logged: not the shared secret, not the user's password
    assert SECRET.decode() not in caplog.text and PASSWORD not in caplog.text


def test_no_warning_without_the_attribute(caplog: pytest.LogCaptureFixture) -> None:
    answer = accept_with((Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(FRAMED6)))
    with caplog.at_level(logging.DEBUG):
        _hosts, verdicts = run_logins(answer, ["alice"])
    assert verdicts[0].success
    assert "RADIUS Access-Accept for 'alice'" in caplog.text
    assert "Delegated-IPv6-Prefix" not in caplog.text
