"""Deferred verification: the authenticators hand credentials to ``verify`` and accept
the answer later (the RADIUS path); local verification answers at once."""

from __future__ import annotations

from sstpd.proto import mschap
from sstpd.proto.ppp.auth import (
    MSCHAPV2,
    PAP,
    MsChapV2Server,
    PapServer,
    Verdict,
    VerifyRequest,
    local_verifier,
)
from sstpd.proto.ppp.frame import Packet
from tests.unit.test_ppp_auth import (
    AUTH_CHALLENGE,
    AUTH_RESPONSE,
    HLAK,
    NT_RESPONSE,
    PEER_CHALLENGE,
    USERS,
    Collector,
    response_data,
    scripted,
)


class Deferred:
    def __init__(self) -> None:
        self.requests: list[VerifyRequest] = []

    def __call__(self, req: VerifyRequest) -> Verdict | None:
        self.requests.append(req)
        return None


def deferred_chap(
    retries: int = 0, *challenges: bytes
) -> tuple[MsChapV2Server, Collector, Deferred]:
    c, d = Collector(), Deferred()
    srv = MsChapV2Server(
        c.sent.append,
        c.results.append,
        verify=d,
        random=scripted(b"\x07", AUTH_CHALLENGE, *challenges),
        retries=retries,
    )
    srv.start(0.0)
    return srv, c, d


def test_chap_request_carries_everything_radius_needs() -> None:
    srv, c, d = deferred_chap()
    srv.receive(Packet(2, 7, response_data(b"DOM\\User")), 1.0)
    (req,) = d.requests
    assert req == VerifyRequest(
        MSCHAPV2,
        "DOM\\User",
        "User",
        identifier=7,
        authenticator_challenge=AUTH_CHALLENGE,
        peer_challenge=PEER_CHALLENGE,
        nt_response=NT_RESPONSE,
    )
    assert len(c.sent) == 1 and not c.results  # only the Challenge so far
    assert srv.get_timer() is None  # no Challenge retransmission while verifying


def test_chap_duplicate_response_while_pending_is_ignored() -> None:
    srv, c, d = deferred_chap()
    srv.receive(Packet(2, 7, response_data(b"User")), 1.0)
    srv.receive(Packet(2, 7, response_data(b"User")), 2.0)
    assert len(d.requests) == 1 and len(c.sent) == 1


def test_chap_success_from_a_later_answer() -> None:
    srv, c, d = deferred_chap()
    srv.receive(Packet(2, 7, response_data(b"User")), 1.0)
    srv.complete(d.requests[0], Verdict(True, AUTH_RESPONSE.decode(), HLAK, message="Hi"), 2.0)
    assert c.sent[-1] == Packet(3, 7, AUTH_RESPONSE + b" M=Hi")
    assert c.results[-1].success and c.results[-1].hlak == HLAK
    srv.receive(Packet(2, 7, response_data(b"User")), 3.0)  # lost Success: repeated
    assert c.sent[-1] == Packet(3, 7, AUTH_RESPONSE + b" M=Hi")


def test_chap_stale_answer_is_ignored() -> None:
    srv, c, _d = deferred_chap()
    srv.receive(Packet(2, 7, response_data(b"User")), 1.0)
    other = VerifyRequest(MSCHAPV2, "User", "User", identifier=7)
    srv.complete(other, Verdict(True, AUTH_RESPONSE.decode(), HLAK), 2.0)
    assert not c.results and len(c.sent) == 1


def test_chap_failure_code_and_retry_with_fresh_challenge() -> None:
    fresh = bytes(range(16))
    srv, c, d = deferred_chap(1, fresh)
    srv.receive(Packet(2, 7, response_data(b"User")), 1.0)
    srv.complete(d.requests[0], Verdict(False, code=648, reason="password expired"), 2.0)
    text = c.sent[-1].data.decode()
    assert text.startswith(f"E=648 R=1 C={fresh.hex().upper()} V=3")
    assert c.results[-1].code == 648 and c.results[-1].retry
    srv.receive(Packet(2, 8, response_data(b"User")), 3.0)
    assert d.requests[-1].authenticator_challenge == fresh and d.requests[-1].identifier == 8


def test_pap_deferred() -> None:
    c, d = Collector(), Deferred()
    srv = PapServer(c.sent.append, c.results.append, verify=d)
    srv.receive(Packet(1, 3, b"\x04User\x02pw"), 0.0)
    srv.receive(Packet(1, 3, b"\x04User\x02pw"), 0.5)  # retransmission while pending
    (req,) = d.requests
    assert (req.method, req.user, req.password, req.identifier) == (PAP, "User", "pw", 3)
    assert not c.sent
    srv.complete(req, Verdict(False, reason="Access-Reject"), 1.0)
    assert c.sent[-1].code == 3 and c.results[-1].reason == "Access-Reject"


def test_local_verifier_matches_rfc2759_vector() -> None:
    verify = local_verifier(USERS.get)
    req = VerifyRequest(
        MSCHAPV2,
        "User",
        "User",
        authenticator_challenge=AUTH_CHALLENGE,
        peer_challenge=PEER_CHALLENGE,
        nt_response=NT_RESPONSE,
    )
    v = verify(req)
    assert v is not None and v.success
    assert v.authenticator_response.encode() == AUTH_RESPONSE and v.hlak == HLAK
    bad = verify(
        VerifyRequest(
            MSCHAPV2,
            "User",
            "User",
            authenticator_challenge=AUTH_CHALLENGE,
            peer_challenge=PEER_CHALLENGE,
            nt_response=bytes(24),
        )
    )
    assert bad is not None and not bad.success and bad.code == 691
    unknown = verify(VerifyRequest(PAP, "x", "x", password="clientPass"))
    assert unknown is not None and not unknown.success
    ok = verify(VerifyRequest(PAP, "User", "User", password="clientPass"))
    assert ok is not None and ok.success and mschap.nt_password_hash("clientPass") == USERS["User"]


# ---------------------------------------------------------------- EAP-MSCHAPv2


def test_eap_mschapv2_goes_through_verify_and_accepts_a_later_answer() -> None:
    from sstpd.proto.ppp.eap import EapServer
    from tests.unit.test_ppp_eap import (
        V_AUTH_CHALLENGE,
        V_EAP_SUCCESS,
        V_HLAK,
        V_IDENTITY_RESP,
        V_RESPONSE,
        V_SUCCESS_REQ,
        V_SUCCESS_RESP,
        scripted_random,
    )

    sent: list[bytes] = []
    reports: list[object] = []
    d = Deferred()
    eap = EapServer(
        lambda p: sent.append(p.encode()),
        reports.append,
        verify=d,
        random=scripted_random(b"\x00", V_AUTH_CHALLENGE),
    )
    eap.start(0.0)
    eap.receive(Packet.decode(V_IDENTITY_RESP), 0.0)
    eap.receive(Packet.decode(V_RESPONSE), 0.1)
    (req,) = d.requests  # the same record PPP MS-CHAPv2 hands over (RADIUS attributes)
    assert (req.method, req.user, req.identifier) == (MSCHAPV2, "User", 2)
    assert req.authenticator_challenge == V_AUTH_CHALLENGE and req.peer_challenge == PEER_CHALLENGE
    assert req.nt_response == NT_RESPONSE
    assert eap.get_timer() is None  # no Challenge retransmission while RADIUS works
    eap.receive(Packet.decode(V_RESPONSE), 0.2)  # the client repeats itself: ignored
    assert len(d.requests) == 1
    eap.complete(req, Verdict(True, AUTH_RESPONSE.decode(), HLAK), 0.3)
    assert sent[-1] == V_SUCCESS_REQ  # byte for byte what the local check sends
    eap.receive(Packet.decode(V_SUCCESS_RESP), 0.4)
    assert sent[-1] == V_EAP_SUCCESS
    assert reports[-1].success and reports[-1].hlak == V_HLAK  # type: ignore[attr-defined]


def test_eap_mschapv2_radius_reject_code_reaches_the_failure() -> None:
    from sstpd.proto.ppp.eap import EapServer
    from tests.unit.test_ppp_eap import V_IDENTITY_RESP, V_RESPONSE, scripted_random

    sent: list[bytes] = []
    d = Deferred()
    eap = EapServer(
        lambda p: sent.append(p.encode()),
        lambda r: None,
        verify=d,
        random=scripted_random(b"\x00", AUTH_CHALLENGE),
    )
    eap.start(0.0)
    eap.receive(Packet.decode(V_IDENTITY_RESP), 0.0)
    eap.receive(Packet.decode(V_RESPONSE), 0.1)
    eap.complete(d.requests[0], Verdict(False, code=647, reason="Access-Reject"), 0.2)
    assert b"E=647 R=0" in sent[-1]
