"""The EAP peer, :class:`EapPeer`: answers Identity and MS-CHAP-V2, Naks every other type
with 26, checks the server's authenticator response and hands the HLAK to the link.

Separate from the authenticator, with which it shares only the codec.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.auth.common import ERROR_AUTHENTICATION_FAILURE, AuthResult, Report, Send
from sstpd.proto.ppp.auth.mschapv2 import parse_failure
from sstpd.proto.ppp.eap.codec import (
    EAP_MSCHAPV2,
    EapCode,
    EapPacket,
    EapType,
    MsChapV2Message,
    MsOpCode,
    response_data,
)
from sstpd.proto.ppp.frame import Packet


class EapPeer:
    """The peer: answers Identity and MS-CHAP-V2, Naks every other type with 26."""

    method = EAP_MSCHAPV2

    def __init__(
        self,
        send: Send,
        report: Report,
        *,
        username: str,
        nt_hash: bytes,
        random: Callable[[int], bytes],
    ) -> None:
        self._send_packet, self._report, self._random = send, report, random
        self.username = username
        self.nt_hash = nt_hash
        self._last: EapPacket | None = None  # our last Response, resent for a retransmission
        self._last_request = b""
        self._expected = ""
        self._ms_id = -1
        self._hlak: bytes | None = None
        self._nt_response = b""
        self._awaiting_retry = False
        self._held: tuple[int, int, bytes] | None = None  # a Challenge waiting for retry()
        self._done = False
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        pass  # the authenticator speaks first

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def _respond(self, identifier: int, kind: int, data: bytes) -> None:
        self._last = EapPacket(EapCode.RESPONSE, identifier, kind, data)
        self._send_packet(Packet.decode(self._last.encode()))

    def _fail(self, reason: str, code: int = 0, retry: bool = False) -> None:
        self._done = self._done or not retry
        self._report(
            AuthResult(False, self.username, EAP_MSCHAPV2, code=code, reason=reason, retry=retry)
        )

    def retry(self, nt_hash: bytes, now: float) -> bool:
        """Answer an ``R=1`` Failure with new credentials; False if no retry is allowed."""
        if not self._awaiting_retry or self._done:
            return False
        self.nt_hash, self._awaiting_retry = nt_hash, False
        if self._held is not None:
            held, self._held = self._held, None
            self._answer_challenge(*held)
        return True

    def receive(self, packet: Packet, now: float) -> None:
        if self._done:
            return
        try:
            eap = EapPacket.decode(packet.encode())
        except ParseError:
            return
        if eap.code == EapCode.SUCCESS:
            if self._hlak is None:
                self._fail("EAP-Success before the MS-CHAPv2 exchange completed")
            else:
                self._done = True
                self._report(AuthResult(True, self.username, EAP_MSCHAPV2, self._hlak))
            return
        if eap.code == EapCode.FAILURE:
            self._fail("EAP-Failure", ERROR_AUTHENTICATION_FAILURE)
            return
        if eap.code != EapCode.REQUEST:
            return
        raw = eap.encode()
        if self._last is not None and raw == self._last_request:
            self._send_packet(Packet.decode(self._last.encode()))  # a retransmitted Request
            return
        self._last_request = raw
        if eap.type == EapType.IDENTITY:
            self._respond(eap.identifier, EapType.IDENTITY, self.username.encode("utf-8"))
        elif eap.type == EapType.NOTIFICATION:
            self._respond(eap.identifier, EapType.NOTIFICATION, b"")
        elif eap.type != EapType.MSCHAPV2:
            self._respond(eap.identifier, EapType.NAK, bytes([EapType.MSCHAPV2]))
        else:
            try:
                message = MsChapV2Message.decode(eap.data)
            except ParseError:
                return
            self._mschapv2(eap.identifier, message)

    def _mschapv2(self, identifier: int, message: MsChapV2Message) -> None:
        op, data = message.opcode, message.data
        if op == MsOpCode.CHALLENGE:
            if len(data) < 17 or data[0] != 16:
                return
            if self._awaiting_retry:
                self._held = (identifier, message.ms_id, data[1:17])
            else:
                self._answer_challenge(identifier, message.ms_id, data[1:17])
            return
        if message.ms_id != self._ms_id or message.short:
            return
        text = data.decode("utf-8", "replace")
        if op == MsOpCode.SUCCESS:
            if hmac.compare_digest(text[:42].encode(), self._expected.encode()):
                self._hlak = mschap.hlak(self.nt_hash, self._nt_response)
                self._respond(identifier, EapType.MSCHAPV2, bytes([MsOpCode.SUCCESS]))
            else:
                self._respond(identifier, EapType.MSCHAPV2, bytes([MsOpCode.FAILURE]))
                self._fail("server not authenticated")  # RFC 2759 §5
        elif op == MsOpCode.FAILURE:
            fields = parse_failure(text)
            error = fields.get("E", "")
            retry = fields.get("R") == "1" and len(fields.get("C", "")) == 32
            self._awaiting_retry = retry
            self._respond(identifier, EapType.MSCHAPV2, bytes([MsOpCode.FAILURE]))
            code = int(error) if error.isdigit() else ERROR_AUTHENTICATION_FAILURE
            self._fail(fields.get("M", text), code, retry)

    def _answer_challenge(self, identifier: int, ms_id: int, challenge: bytes) -> None:
        peer_challenge = self._random(16)
        nt = mschap.generate_nt_response(challenge, peer_challenge, self.username, self.nt_hash)
        self._expected = mschap.authenticator_response(
            self.nt_hash, nt, peer_challenge, challenge, self.username
        )
        self._nt_response, self._ms_id = nt, ms_id
        name = self.username.encode("utf-8")
        body = MsChapV2Message(MsOpCode.RESPONSE, ms_id, response_data(peer_challenge, nt, name))
        self._respond(identifier, EapType.MSCHAPV2, body.encode())
