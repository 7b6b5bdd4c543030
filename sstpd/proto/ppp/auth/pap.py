"""PAP (RFC 1334), both ends: :class:`PapServer` checks Authenticate-Requests through
``verify``, :class:`PapPeer` sends them and retransmits on the restart timer.

Separate from MS-CHAPv2 because the two share nothing but the interface in ``common``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from sstpd.proto import mschap
from sstpd.proto.ppp.auth.common import (
    ERROR_AUTHENTICATION_FAILURE,
    PAP,
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


class PapCode(enum.IntEnum):
    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


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
        self._id = next_id(self._id)
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
