"""PAP (RFC 1334) and MS-CHAPv2 (RFC 1994 packet format, RFC 2759) for both ends.

Each object talks to the link through two callables given to its constructor: ``send``
(one auth packet to frame and transmit) and ``report`` (an :class:`AuthResult` when an
attempt ends). Neither raises on peer input: malformed or unexpected packets are dropped.

Server side: the authenticators do not check credentials themselves. They hand a
:class:`VerifyRequest` (user, challenges, NT-Response or password) to a ``verify``
callable, which answers with a :class:`Verdict` at once (the local users file,
:func:`local_verifier`) or returns None and the answer comes later through
``complete(request, verdict, now)`` (RADIUS, from the I/O layer). EAP-MSCHAPv2 can build
the same request and use the same verifiers. Locally the account is looked up by the user
name without any ``DOMAIN\\`` prefix; an unknown user is answered exactly like a wrong
password (E=691), and the comparison is constant time. With ``retries`` > 0 a failed
MS-CHAPv2 attempt is answered ``R=1`` with a fresh challenge; the peer's new Response
carries the Failure's Identifier plus one (the MS-CHAP convention, RFC 2433 §5) - the
Failure's own Identifier is accepted too.

The modules: ``common`` (method names, ``AuthResult``, the verification interface:
``VerifyRequest``, ``Verdict``, ``local_verifier``), ``mschapv2`` (``MsChapV2Server``,
``MsChapV2Peer``, the Response verifier and Failure message EAP reuses), ``pap``
(``PapServer``, ``PapPeer``). This package re-exports every name they define.
"""

from __future__ import annotations

from sstpd.proto.ppp.auth.common import (
    ERROR_AUTHENTICATION_FAILURE,
    MSCHAPV2,
    PAP,
    ZERO_HLAK,
    AuthResult,
    Report,
    Send,
    Verdict,
    Verify,
    VerifyRequest,
    local_verifier,
    verifier_from,
)
from sstpd.proto.ppp.auth.mschapv2 import (
    ChapCode,
    MsChapV2Peer,
    MsChapV2Server,
    MsChapV2Verdict,
    failure_message,
    parse_failure,
    verify_mschapv2_response,
)
from sstpd.proto.ppp.auth.pap import PapCode, PapPeer, PapServer

__all__ = [
    "ERROR_AUTHENTICATION_FAILURE",
    "MSCHAPV2",
    "PAP",
    "ZERO_HLAK",
    "AuthResult",
    "ChapCode",
    "MsChapV2Peer",
    "MsChapV2Server",
    "MsChapV2Verdict",
    "PapCode",
    "PapPeer",
    "PapServer",
    "Report",
    "Send",
    "Verdict",
    "Verify",
    "VerifyRequest",
    "failure_message",
    "local_verifier",
    "parse_failure",
    "verifier_from",
    "verify_mschapv2_response",
]
