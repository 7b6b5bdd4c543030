"""What every PPP authenticator shares, and the one way credentials are checked.

The method names, the :class:`AuthResult` an authenticator reports to the link (through the
``Send`` and ``Report`` callables it is given), and the verification interface: a
:class:`VerifyRequest` handed to a ``verify`` callable, answered with a :class:`Verdict` at
once (:func:`local_verifier`, the users file) or later (RADIUS). Separate from the
protocols so that PAP, MS-CHAPv2 and EAP (``sstpd.proto.ppp.eap``) build on it without
importing each other.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from sstpd.proto import mschap
from sstpd.proto.ppp.frame import Packet

MSCHAPV2 = "mschapv2"
PAP = "pap"
ZERO_HLAK = bytes(32)
ERROR_AUTHENTICATION_FAILURE = 691
DUMMY_HASH = bytes(16)


@dataclass(frozen=True)
class AuthResult:
    success: bool
    username: str
    method: str
    hlak: bytes = ZERO_HLAK
    code: int = 0
    reason: str = ""
    retry: bool = False  # failure only: another attempt is allowed


Send = Callable[[Packet], None]
Report = Callable[[AuthResult], None]


@dataclass(frozen=True)
class VerifyRequest:
    """One set of credentials to check, the same shape for PAP, MS-CHAPv2 and EAP-MSCHAPv2.

    ``name`` is the name as the peer sent it (RADIUS User-Name), ``user`` the name without
    ``DOMAIN\\``. MS-CHAPv2 fills the challenges, ``nt_response`` and ``identifier`` (the
    CHAP / EAP-MSCHAPv2 MS-CHAPv2-ID); PAP fills ``password``."""

    method: str
    name: str
    user: str
    identifier: int = 0
    password: str = ""
    authenticator_challenge: bytes = b""
    peer_challenge: bytes = b""
    nt_response: bytes = b""


@dataclass(frozen=True)
class Verdict:
    """The answer to a :class:`VerifyRequest`.

    Success: ``authenticator_response`` is the MS-CHAPv2 ``S=<40 hex>`` and ``hlak`` the
    key the crypto binding is checked with (zeros for PAP). Failure: ``code`` is the
    MS-CHAP error (691 = bad credentials) and ``reason`` says why, for the log.
    ``message`` is the text shown to the peer (``M=`` / PAP message)."""

    success: bool
    authenticator_response: str = ""
    hlak: bytes = ZERO_HLAK
    code: int = ERROR_AUTHENTICATION_FAILURE
    reason: str = ""
    message: str = ""


Verify = Callable[[VerifyRequest], "Verdict | None"]


def local_verifier(lookup: Callable[[str], bytes | None]) -> Callable[[VerifyRequest], Verdict]:
    """Check credentials against stored NT hashes (the users file), answering at once."""

    def verify(req: VerifyRequest) -> Verdict:
        stored = lookup(req.user)
        nt_hash = stored if stored is not None and len(stored) == 16 else DUMMY_HASH
        if req.method == PAP:
            computed = mschap.nt_password_hash(req.password)
            ok = hmac.compare_digest(computed, nt_hash) and stored is not None
            if ok:
                return Verdict(True, message="Welcome")
            return Verdict(False, reason="authentication failure")
        expected = mschap.generate_nt_response(
            req.authenticator_challenge, req.peer_challenge, req.user, nt_hash
        )
        if not (hmac.compare_digest(expected, req.nt_response) and stored is not None):
            return Verdict(False, reason="authentication failure")
        return Verdict(
            True,
            authenticator_response=mschap.authenticator_response(
                nt_hash, req.nt_response, req.peer_challenge, req.authenticator_challenge, req.user
            ),
            hlak=mschap.hlak(nt_hash, req.nt_response),
            message="Welcome",
        )

    return verify


def verifier_from(verify: Verify | None, lookup: Callable[[str], bytes | None] | None) -> Verify:
    if verify is not None:
        return verify
    if lookup is None:
        raise TypeError("an authenticator needs verify= or lookup=")
    return local_verifier(lookup)


def next_id(identifier: int) -> int:
    return (identifier + 1) & 0xFF
