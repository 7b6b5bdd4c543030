"""MS-CHAPv2 (RFC 1994 packet format, RFC 2759), both ends: :class:`MsChapV2Server` and
:class:`MsChapV2Peer`, and the pieces EAP-MS-CHAP-V2 reuses (the Response verifier, the
Failure message and its parser).

With ``retries`` > 0 a failed attempt is answered ``R=1`` with a fresh challenge; the peer's
new Response carries the Failure's Identifier plus one (the MS-CHAP convention, RFC 2433
§5) - the Failure's own Identifier is accepted too. Separate from PAP because the two share
nothing but the interface in ``common``.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from sstpd.proto import mschap
from sstpd.proto.ppp.auth.common import (
    DUMMY_HASH,
    ERROR_AUTHENTICATION_FAILURE,
    MSCHAPV2,
    ZERO_HLAK,
    AuthResult,
    Report,
    Send,
    Verdict,
    Verify,
    VerifyRequest,
    next_id,
    verifier_from,
)
from sstpd.proto.ppp.frame import Packet


class ChapCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


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
    nt_hash = stored if stored is not None and len(stored) == 16 else DUMMY_HASH
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
            self._retry_ids = (next_id(ident), ident)
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
                self._retry = (next_id(packet.identifier), challenge)
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
