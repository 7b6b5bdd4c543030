"""The EAP authenticator, :class:`EapServer`: Identity, then EAP-MS-CHAP-V2; nothing else
is offered.

It discards what RFC 3748 §4.1 says to discard (a Response that does not answer the
outstanding Request, unknown codes and types, EAP after the exchange ended), tells the link
why through ``notice`` (a log line), and gives up after ``max_invalid`` such packets, which
ends that session. The MS-CHAPv2 Response is checked like PPP's, through ``verify``.
Separate from the peer, with which it shares only the codec.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.auth.common import (
    ERROR_AUTHENTICATION_FAILURE,
    MSCHAPV2,
    AuthResult,
    Report,
    Send,
    Verdict,
    Verify,
    VerifyRequest,
    verifier_from,
)
from sstpd.proto.ppp.auth.mschapv2 import failure_message
from sstpd.proto.ppp.eap.codec import (
    EAP_MSCHAPV2,
    EapCode,
    EapPacket,
    EapType,
    MsChapV2Message,
    MsOpCode,
    challenge_data,
    name_of,
    type_names,
)
from sstpd.proto.ppp.frame import Packet

Notice = Callable[[str, str], None]  # (level: "debug" | "info" | "warning", text)


class _State(enum.Enum):
    IDENTITY = "waiting for the identity"
    CHALLENGE = "waiting for the MS-CHAPv2 Response"
    SUCCESS_SENT = "waiting for the Success-Response"
    FAILURE_SENT = "waiting for the Failure-Response"
    DONE = "done"


class EapServer:
    """The authenticator: Identity, then EAP-MS-CHAP-V2; nothing else is offered."""

    method = EAP_MSCHAPV2

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
        max_transmits: int = 10,
        max_invalid: int = 16,
        notice: Notice | None = None,
    ) -> None:
        self._send_packet, self._report, self._random = send, report, random
        # the MS-CHAPv2 Response is checked like PPP's: locally, or later by RADIUS
        self._verify = verifier_from(verify, lookup)
        self.pending: VerifyRequest | None = None
        self._notice = notice or (lambda level, text: None)
        self._name = name.encode("utf-8")
        self._retries_left = retries
        self._interval, self._max_transmits, self._max_invalid = (
            restart_interval,
            max_transmits,
            max_invalid,
        )
        self.state = _State.IDENTITY
        self.identity = ""
        self.invalid = 0
        self._id = 0
        self._ms_id = 0
        self._challenge = b""
        self._request: EapPacket | None = None
        self._transmits = 0
        self._retry = False
        self._failure = "authentication failure"
        self._failure_code = ERROR_AUTHENTICATION_FAILURE
        self._user = ""
        self._success: AuthResult | None = None
        self.deadline: float | None = None

    # ------------------------------------------------------------------ output

    def _send_request(self, kind: int, data: bytes, now: float) -> None:
        self._id = (self._id + 1) & 0xFF
        self._request = EapPacket(EapCode.REQUEST, self._id, kind, data)
        self._transmits = 0
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        assert self._request is not None
        self._send_packet(Packet.decode(self._request.encode()))
        self._transmits += 1
        self.deadline = now + self._interval

    def _send_challenge(self, ms_id: int, now: float) -> None:
        self._ms_id = ms_id
        message = MsChapV2Message(
            MsOpCode.CHALLENGE, ms_id, challenge_data(self._challenge, self._name)
        )
        self._send_request(EapType.MSCHAPV2, message.encode(), now)
        self.state = _State.CHALLENGE

    def _finish(self, success: bool, identifier: int, result: AuthResult) -> None:
        code = EapCode.SUCCESS if success else EapCode.FAILURE
        self._send_packet(Packet(code, identifier))
        self.state, self.deadline, self._request = _State.DONE, None, None
        self._report(result)

    def _fail(self, reason: str, identifier: int, code: int = 0) -> None:
        result = AuthResult(False, self._user, EAP_MSCHAPV2, code=code, reason=reason)
        self._finish(False, identifier, result)

    def _discard(self, reason: str, level: str = "warning") -> None:
        self.invalid += 1
        if self.invalid <= 4:
            self._notice(level, f"EAP packet ignored: {reason}")
        if self.invalid >= self._max_invalid and self.state is not _State.DONE:
            self._fail(f"{self.invalid} invalid EAP packets, the last: {reason}", self._id)

    # ------------------------------------------------------------------ driver API

    def start(self, now: float) -> None:
        self._id = self._random(1)[0]
        self._send_request(EapType.IDENTITY, b"", now)  # no displayable text, as RRAS

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.deadline is None or now < self.deadline or self._request is None:
            return
        final_failure = self.state is _State.FAILURE_SENT and not self._retry
        limit = 3 if final_failure else self._max_transmits
        if self._transmits < limit:
            self._transmit(now)  # RFC 3748 §4.3: the authenticator retransmits
        elif final_failure:
            reason = f"{self._failure} (no Failure-Response)"
            self._fail(reason, self._id, ERROR_AUTHENTICATION_FAILURE)
        else:
            self.deadline = None  # the link's authentication timeout ends it

    def receive(self, packet: Packet, now: float) -> None:
        try:
            eap = EapPacket.decode(packet.encode())
        except ParseError as exc:
            self._discard(str(exc))
            return
        if eap.code != EapCode.RESPONSE:
            self._discard(f"{name_of(EapCode, eap.code)} from the client")
            return
        if self.state is _State.DONE:
            self._discard(f"Response id {eap.identifier} after the exchange ended", "debug")
            return
        if eap.identifier != self._id:
            # RFC 3748 §4.1: silently discarded (a late answer to a retransmission, or a forgery)
            self._discard(
                f"Response id {eap.identifier} does not answer Request {self._id}", "debug"
            )
            return
        assert eap.type is not None
        if eap.type == EapType.NAK and self.state is not _State.IDENTITY:
            self._nak(eap)
        elif self.state is _State.IDENTITY:
            if eap.type != EapType.IDENTITY:
                self._discard(f"Response type {name_of(EapType, eap.type)} to an Identity Request")
                return
            self.identity = eap.data.decode("utf-8", "replace").strip("\x00")
            self._user = mschap.strip_domain(self.identity)
            self._challenge = self._random(16)
            self._send_challenge((self._id + 1) & 0xFF, now)
        elif eap.type != EapType.MSCHAPV2:
            self._discard(f"Response type {name_of(EapType, eap.type)} to an MS-CHAP-V2 Request")
        else:
            try:
                message = MsChapV2Message.decode(eap.data)
            except ParseError as exc:
                self._discard(str(exc))
                return
            self._mschapv2(eap.identifier, message, now)

    # ------------------------------------------------------------------ steps

    def _nak(self, eap: EapPacket) -> None:
        wanted = bytes(t for t in eap.data if t)
        if EapType.MSCHAPV2 in wanted:
            self._discard("a Nak that asks for MS-CHAP-V2, the type offered")
            return
        self._fail(
            f"client wants EAP type {type_names(wanted)}; this server offers MS-CHAP-V2 (26)",
            eap.identifier,
        )

    def _mschapv2(self, identifier: int, message: MsChapV2Message, now: float) -> None:
        state, op = self.state, message.opcode
        if state is _State.SUCCESS_SENT and message.short:
            assert self._success is not None
            if op == MsOpCode.SUCCESS:
                self._finish(True, identifier, self._success)  # EAP-Success only now
            else:
                self._fail("client refused the server's authenticator response", identifier)
            return
        if state is _State.FAILURE_SENT and message.short and op == MsOpCode.FAILURE:
            if self._retry:
                self._send_challenge((self._ms_id + 1) & 0xFF, now)  # the C= challenge
            else:
                self._fail(self._failure, identifier, self._failure_code)
            return
        retrying = state is _State.FAILURE_SENT and self._retry
        if op != MsOpCode.RESPONSE or message.short or not (state is _State.CHALLENGE or retrying):
            form = "short " if message.short else ""
            self._discard(f"{form}{name_of(MsOpCode, op)} while {state.value}")
            return
        if self.pending is not None:
            self._discard("Response while the last one is being verified", "debug")
            return
        accepted = (self._ms_id, (self._ms_id + 1) & 0xFF) if retrying else (self._ms_id,)
        if message.ms_id not in accepted:
            self._discard(f"MS-CHAPv2-ID {message.ms_id} in a Response to {self._ms_id}")
            return
        self._check_response(message, now)

    def _check_response(self, message: MsChapV2Message, now: float) -> None:
        data = message.data
        if len(data) < 50 or data[0] != 49:
            self._discard("malformed MS-CHAPv2 Response")
            return
        name = data[50:].decode("utf-8", "replace")
        request = VerifyRequest(
            MSCHAPV2,  # the credentials are MS-CHAPv2's (RADIUS: MS-CHAP2-Response)
            name,
            mschap.strip_domain(name),
            identifier=message.ms_id,
            authenticator_challenge=self._challenge,
            peer_challenge=data[1:17],
            nt_response=data[25:49],
        )
        self.pending, self.deadline = request, None  # no retransmission while verifying
        verdict = self._verify(request)
        if verdict is not None:
            self.complete(request, verdict, now)

    def complete(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """The answer to ``request``; ignored unless it is the one still pending."""
        if request is not self.pending or self.state is _State.DONE:
            return
        self.pending = None
        ok, reason = verdict.success, verdict.reason or "authentication failure"
        if ok and self.identity and self._user.casefold() != request.user.casefold():
            ok, reason = False, f"MS-CHAPv2 name {request.user!r} is not the EAP identity"
        self._user = request.user
        if ok:
            text = (verdict.authenticator_response + " M=OK").encode()
            self._success = AuthResult(True, request.user, EAP_MSCHAPV2, verdict.hlak)
            reply = MsChapV2Message(MsOpCode.SUCCESS, request.identifier, text)
            self._send_request(EapType.MSCHAPV2, reply.encode(), now)
            self.state = _State.SUCCESS_SENT
            return
        code = verdict.code if not verdict.success else ERROR_AUTHENTICATION_FAILURE
        self._retry, self._failure, self._failure_code = self._retries_left > 0, reason, code
        self._retries_left -= 1
        self._challenge = self._random(16)
        # echoed, never incremented (docs/protocol/eap-mschapv2.md §4)
        self._ms_id = request.identifier
        text = failure_message(self._retry, self._challenge, code).encode()
        reply = MsChapV2Message(MsOpCode.FAILURE, request.identifier, text)
        self._send_request(EapType.MSCHAPV2, reply.encode(), now)
        self.state = _State.FAILURE_SENT
        if self._retry:  # the final failure is reported with the Failure-Response
            self._report(
                AuthResult(False, request.user, EAP_MSCHAPV2, code=code, reason=reason, retry=True)
            )
