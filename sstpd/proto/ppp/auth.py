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
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from sstpd.proto import mschap
from sstpd.proto.ppp.frame import Packet

__all__ = [
    "MSCHAPV2",
    "PAP",
    "ZERO_HLAK",
    "AuthResult",
    "MsChapV2Peer",
    "MsChapV2Server",
    "MsChapV2Verdict",
    "PapPeer",
    "PapServer",
    "Verdict",
    "Verify",
    "VerifyRequest",
    "failure_message",
    "local_verifier",
    "parse_failure",
    "verify_mschapv2_response",
]

MSCHAPV2 = "mschapv2"
PAP = "pap"
ZERO_HLAK = bytes(32)
ERROR_AUTHENTICATION_FAILURE = 691
_DUMMY_HASH = bytes(16)


class ChapCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class PapCode(enum.IntEnum):
    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


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
        nt_hash = stored if stored is not None and len(stored) == 16 else _DUMMY_HASH
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


def _next_id(identifier: int) -> int:
    return (identifier + 1) & 0xFF


# --------------------------------------------------------------------------- MS-CHAPv2


@dataclass(frozen=True)
class MsChapV2Verdict:
    """What checking one MS-CHAPv2 Response against the user database found."""

    user: str  # the name without any DOMAIN\\ prefix
    ok: bool
    authenticator_response: str = ""  # "S=<40 hex>" when ok
    hlak: bytes = ZERO_HLAK


def verify_mschapv2_response(
    challenge: bytes, data: bytes, lookup: Callable[[str], bytes | None]
) -> MsChapV2Verdict | None:
    """Check the Response ``data`` (Value-Size 49, value, Name; the same bytes in PPP CHAP
    and in EAP-MS-CHAP-V2) against our 16-byte ``challenge``; None if malformed.

    An unknown user is checked against a dummy hash so both cases cost the same."""
    if len(data) < 50 or data[0] != 49:
        return None
    peer_challenge, nt_response = data[1:17], data[25:49]
    user = mschap.strip_domain(data[50:].decode("utf-8", "replace"))
    stored = lookup(user)
    nt_hash = stored if stored is not None and len(stored) == 16 else _DUMMY_HASH
    expected = mschap.generate_nt_response(challenge, peer_challenge, user, nt_hash)
    if not (hmac.compare_digest(expected, nt_response) and stored is not None):
        return MsChapV2Verdict(user, False)
    message = mschap.authenticator_response(nt_hash, nt_response, peer_challenge, challenge, user)
    return MsChapV2Verdict(user, True, message, mschap.hlak(nt_hash, nt_response))


def failure_message(retry: bool, challenge: bytes, code: int = ERROR_AUTHENTICATION_FAILURE) -> str:
    """The MS-CHAPv2 Failure text (RFC 2759 §6); 691 = wrong password or unknown user."""
    return f"E={code} R={int(retry)} C={challenge.hex().upper()} V=3 M=Authentication failure"


class MsChapV2Server:
    """The authenticator: Challenge -> Response -> (verification) -> Success | Failure."""

    method = MSCHAPV2

    def __init__(
        self,
        send: Send,
        report: Report,
        *,
        random: Callable[[int], bytes],
        verify: Verify | None = None,
        lookup: Callable[[str], bytes | None] | None = None,
        name: str = "sstpd",
        retries: int = 0,
        restart_interval: float = 3.0,
    ) -> None:
        self._send, self._report, self._random = send, report, random
        self._verify = verifier_from(verify, lookup)
        self._name = name.encode("utf-8")
        self._retries_left = retries
        self._interval = restart_interval
        self._id = 0
        self._challenge = b""
        self._waiting = False  # a Response to ``_id`` is expected
        self._retry_ids: tuple[int, ...] = ()
        self._final: Packet | None = None  # last Success / final Failure, resent on duplicates
        self.pending: VerifyRequest | None = None  # handed to ``verify``, not answered yet
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        self._id = self._random(1)[0]
        self._challenge = self._random(16)
        self._waiting = True
        self._retry_ids = (self._id,)
        self._send_challenge(now)

    def _send_challenge(self, now: float) -> None:
        data = bytes([16]) + self._challenge + self._name
        self._send(Packet(ChapCode.CHALLENGE, self._id, data))
        self.deadline = now + self._interval

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline and self._waiting:
            self._send_challenge(now)  # the link's auth timeout bounds the retransmissions

    def receive(self, packet: Packet, now: float) -> None:
        if packet.code != ChapCode.RESPONSE:
            return
        if self._final is not None:
            if packet.identifier == self._final.identifier:
                self._send(self._final)  # our answer was lost: repeat it (pppd does too)
            return
        data = packet.data
        if not self._waiting or packet.identifier not in self._retry_ids:
            return  # also while a verification is pending: its answer will follow
        if len(data) < 50 or data[0] != 49:
            return
        name = data[50:].decode("utf-8", "replace")
        request = VerifyRequest(
            MSCHAPV2,
            name,
            mschap.strip_domain(name),
            identifier=packet.identifier,
            authenticator_challenge=self._challenge,
            peer_challenge=data[1:17],
            nt_response=data[25:49],
        )
        self._waiting, self.deadline, self.pending = False, None, request
        verdict = self._verify(request)
        if verdict is not None:
            self.complete(request, verdict, now)

    def complete(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """The answer to ``request``; ignored unless it is the one still pending."""
        if request is not self.pending:
            return
        self.pending = None
        user, ident = request.user, request.identifier
        if verdict.success:
            text = verdict.authenticator_response + " M=" + (verdict.message or "Welcome")
            reply = Packet(ChapCode.SUCCESS, ident, text.encode())
            self._final = reply
            self._send(reply)
            self._report(AuthResult(True, user, MSCHAPV2, verdict.hlak))
            return
        retry = self._retries_left > 0
        self._retries_left -= 1
        self._challenge = self._random(16)
        text = (
            f"E={verdict.code} R={int(retry)} C={self._challenge.hex().upper()}"
            f" V=3 M={verdict.message or 'Authentication failure'}"
        )
        reply = Packet(ChapCode.FAILURE, ident, text.encode())
        if retry:
            self._retry_ids = (_next_id(ident), ident)
            self._waiting = True
        else:
            self._final = reply
        self._send(reply)
        self._report(
            AuthResult(
                False,
                user,
                MSCHAPV2,
                code=verdict.code,
                reason=verdict.reason or "authentication failure",
                retry=retry,
            )
        )


_FAILURE_FIELD = re.compile(r"([ERCVM])=(.*?)(?= [ERCV]=| M=|$)", re.S)


def parse_failure(message: str) -> dict[str, str]:
    """Split ``E=691 R=0 C=... V=3 M=text`` into its fields (M runs to the end)."""
    return {k: v for k, v in _FAILURE_FIELD.findall(message)}


class MsChapV2Peer:
    """The authenticatee: answers Challenges and verifies the server's S= response."""

    method = MSCHAPV2

    def __init__(
        self,
        send: Send,
        report: Report,
        *,
        username: str,
        nt_hash: bytes,
        random: Callable[[int], bytes],
    ) -> None:
        self._send, self._report, self._random = send, report, random
        self.username = username
        self.nt_hash = nt_hash
        self._response: Packet | None = None
        self._challenge = b""
        self._expected = ""
        self._nt_response = b""
        self._done = False
        self._retry: tuple[int, bytes] | None = None  # (identifier, challenge) after R=1
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        pass  # the authenticator speaks first

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def _respond(self, identifier: int, challenge: bytes) -> None:
        peer_challenge = self._random(16)
        nt_response = mschap.generate_nt_response(
            challenge, peer_challenge, self.username, self.nt_hash
        )
        self._challenge, self._nt_response = challenge, nt_response
        self._expected = mschap.authenticator_response(
            self.nt_hash, nt_response, peer_challenge, challenge, self.username
        )
        value = peer_challenge + bytes(8) + nt_response + b"\x00"
        data = bytes([len(value)]) + value + self.username.encode("utf-8")
        self._response = Packet(ChapCode.RESPONSE, identifier, data)
        self._send(self._response)

    def retry(self, nt_hash: bytes, now: float) -> bool:
        """Answer an ``R=1`` Failure with new credentials; False if no retry is allowed."""
        if self._retry is None or self._done:
            return False
        identifier, challenge = self._retry
        self._retry = None
        self.nt_hash = nt_hash
        self._respond(identifier, challenge)
        return True

    def receive(self, packet: Packet, now: float) -> None:
        if self._done:
            return
        code, data = packet.code, packet.data
        if code == ChapCode.CHALLENGE:
            if len(data) < 17 or data[0] != 16:
                return
            challenge = data[1:17]
            resp = self._response
            if resp is not None and resp.identifier == packet.identifier:
                if challenge == self._challenge:
                    self._send(resp)  # retransmitted Challenge: same Response
                return
            self._retry = None
            self._respond(packet.identifier, challenge)
            return
        if self._response is None or packet.identifier != self._response.identifier:
            return
        message = data.decode("utf-8", "replace")
        if code == ChapCode.SUCCESS:
            self._done = True
            got = message[:42]
            if hmac.compare_digest(got.encode(), self._expected.encode()):
                hlak = mschap.hlak(self.nt_hash, self._nt_response)
                self._report(AuthResult(True, self.username, MSCHAPV2, hlak))
            else:
                # RFC 2759 §5: a missing or wrong authenticator response ends the session.
                self._report(
                    AuthResult(False, self.username, MSCHAPV2, reason="server not authenticated")
                )
        elif code == ChapCode.FAILURE:
            fields = parse_failure(message)
            error = fields.get("E", "")
            retry = fields.get("R") == "1"
            try:
                challenge = bytes.fromhex(fields.get("C", ""))
            except ValueError:
                challenge = b""
            if retry and len(challenge) == 16:
                self._retry = (_next_id(packet.identifier), challenge)
            else:
                retry = False
                self._done = True
            self._report(
                AuthResult(
                    False,
                    self.username,
                    MSCHAPV2,
                    code=int(error) if error.isdigit() else ERROR_AUTHENTICATION_FAILURE,
                    reason=fields.get("M", message),
                    retry=retry,
                )
            )


# --------------------------------------------------------------------------- PAP


def _pap_message(code: int, identifier: int, text: str) -> Packet:
    raw = text.encode("utf-8")[:255]
    return Packet(code, identifier, bytes([len(raw)]) + raw)


class PapServer:
    """Checks Authenticate-Requests through ``verify`` (locally: the stored NT hash)."""

    method = PAP

    def __init__(
        self,
        send: Send,
        report: Report,
        *,
        verify: Verify | None = None,
        lookup: Callable[[str], bytes | None] | None = None,
        retries: int = 0,
    ) -> None:
        self._send, self._report = send, report
        self._verify = verifier_from(verify, lookup)
        self._retries_left = retries
        self._final: Packet | None = None
        self.pending: VerifyRequest | None = None
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        pass  # the peer speaks first

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def receive(self, packet: Packet, now: float) -> None:
        if packet.code != PapCode.AUTHENTICATE_REQUEST:
            return
        if self._final is not None:
            if packet.identifier == self._final.identifier:
                self._send(self._final)
            return
        if self.pending is not None:
            return  # a retransmission while the verification runs: its answer will follow
        data = packet.data
        if not data or len(data) < 2 + data[0] or len(data) < 2 + data[0] + data[1 + data[0]]:
            return
        peer_id = data[1 : 1 + data[0]].decode("utf-8", "replace")
        plen = data[1 + data[0]]
        password = data[2 + data[0] : 2 + data[0] + plen].decode("utf-8", "replace")
        request = VerifyRequest(
            PAP,
            peer_id,
            mschap.strip_domain(peer_id),
            identifier=packet.identifier,
            password=password,
        )
        self.pending = request
        verdict = self._verify(request)
        if verdict is not None:
            self.complete(request, verdict, now)

    def complete(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """The answer to ``request``; ignored unless it is the one still pending."""
        if request is not self.pending:
            return
        self.pending = None
        user, ident = request.user, request.identifier
        if verdict.success:
            self._final = _pap_message(
                PapCode.AUTHENTICATE_ACK, ident, verdict.message or "Welcome"
            )
            self._send(self._final)
            self._report(AuthResult(True, user, PAP, verdict.hlak))
            return
        retry = self._retries_left > 0
        self._retries_left -= 1
        reply = _pap_message(
            PapCode.AUTHENTICATE_NAK, ident, verdict.message or "Authentication failure"
        )
        if not retry:
            self._final = reply
        self._send(reply)
        self._report(
            AuthResult(
                False,
                user,
                PAP,
                code=verdict.code,
                reason=verdict.reason or "authentication failure",
                retry=retry,
            )
        )


class PapPeer:
    """Sends Authenticate-Request, retransmitting on the restart timer (RFC 1334 §2.2.1)."""

    method = PAP

    def __init__(
        self,
        send: Send,
        report: Report,
        *,
        username: str,
        password: str,
        restart_interval: float = 3.0,
        max_transmits: int = 10,
    ) -> None:
        self._send, self._report = send, report
        self.username, self._password = username, password
        self._interval, self._max = restart_interval, max_transmits
        self._id = 0
        self._request: Packet | None = None
        self._transmits = 0
        self._done = False
        self.deadline: float | None = None

    def _send_request(self, now: float) -> None:
        user, pw = self.username.encode("utf-8")[:255], self._password.encode("utf-8")[:255]
        data = bytes([len(user)]) + user + bytes([len(pw)]) + pw
        self._request = Packet(PapCode.AUTHENTICATE_REQUEST, self._id, data)
        self._transmits = 0
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        assert self._request is not None
        self._send(self._request)
        self._transmits += 1
        self.deadline = now + self._interval

    def start(self, now: float) -> None:
        self._id = 1
        self._send_request(now)

    def retry(self, password: str, now: float) -> bool:
        if self._done or self._request is not None:
            return False
        self._password = password
        self._id = _next_id(self._id)
        self._send_request(now)
        return True

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.deadline is None or now < self.deadline or self._request is None:
            return
        if self._transmits < self._max:
            self._transmit(now)
            return
        self.deadline, self._done = None, True
        self._report(AuthResult(False, self.username, PAP, reason="no answer from authenticator"))

    def receive(self, packet: Packet, now: float) -> None:
        if self._done or self._request is None or packet.identifier != self._id:
            return
        data = packet.data
        text = data[1 : 1 + data[0]].decode("utf-8", "replace") if data else ""
        if packet.code == PapCode.AUTHENTICATE_ACK:
            self._done, self.deadline = True, None
            self._report(AuthResult(True, self.username, PAP))
        elif packet.code == PapCode.AUTHENTICATE_NAK:
            self._request, self.deadline = None, None  # a retry() may follow
            self._report(
                AuthResult(
                    False,
                    self.username,
                    PAP,
                    code=ERROR_AUTHENTICATION_FAILURE,
                    reason=text or "authentication failure",
                    retry=True,
                )
            )
