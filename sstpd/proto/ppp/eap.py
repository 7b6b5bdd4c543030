"""EAP (RFC 3748, PPP protocol 0xC227) with EAP-MS-CHAP-V2 (type 26), both ends.

What a Windows profile made in Settings, or with ``Add-VpnConnection -AuthenticationMethod
Eap``, authenticates with. The exchange (draft-kamath-pppext-eap-mschapv2-02, [MS-CHAP]
§2.2), Identifiers as in docs/protocol/eap-mschapv2.md §7::

    S: Request/Identity (i)                      C: Response/Identity (i) "DOMAIN\\user"
    S: Request/26 Challenge (i+1, ms_id)         C: Response/26 Response (i+1, ms_id)
    S: Request/26 Success "S=... M=OK" (i+2, the Response's ms_id)
                                                 C: Response/26 Success-Response (i+2): 03
    S: EAP-Success (i+2)                         -> authenticated, HLAK handed to SSTP
    wrong password: Request/26 Failure "E=691 R=r C=... V=3 M=..." (i+2, ms_id)
                                                 C: Response/26 Failure-Response: 04
    S: R=1: a new Challenge (the one in C=)      R=0: EAP-Failure, and LCP closes

The MS-CHAPv2 arithmetic is the plain PPP one: the server checks the Response with
:func:`sstpd.proto.ppp.auth.verify_mschapv2_response`, and the HLAK (first 32 bytes of the
MSK = MasterReceiveKey || MasterSendKey || 32 zeros) is byte for byte the MS-CHAPv2 HLAK.

Both ends have the shape of the other authenticators in :mod:`sstpd.proto.ppp.auth`
(``start``/``receive``/``get_timer``/``handle_timer``, ``send`` and ``report`` callables).
Peer input never raises. The authenticator discards what RFC 3748 §4.1 says to discard
(a Response that does not answer the outstanding Request, unknown codes and types, EAP
after the exchange ended), tells the link why through ``notice`` (a log line), and gives up
after ``max_invalid`` such packets, which ends that session.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from sstpd.errors import ParseError
from sstpd.proto import mschap
from sstpd.proto.ppp.auth import (
    ERROR_AUTHENTICATION_FAILURE,
    MSCHAPV2,
    AuthResult,
    Report,
    Send,
    Verdict,
    Verify,
    VerifyRequest,
    failure_message,
    parse_failure,
    verifier_from,
)
from sstpd.proto.ppp.frame import Packet

__all__ = [
    "EAP_MSCHAPV2",
    "EapCode",
    "EapPacket",
    "EapPeer",
    "EapServer",
    "EapType",
    "MsChapV2Message",
    "MsOpCode",
    "type_names",
]

EAP_MSCHAPV2 = "eap-mschapv2"

Notice = Callable[[str, str], None]  # (level: "debug" | "info" | "warning", text)


class EapCode(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(enum.IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    OTP = 5
    GTC = 6
    TLS = 13
    TTLS = 21
    PEAP = 25
    MSCHAPV2 = 26


class MsOpCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


def _name(enum_type: type[enum.IntEnum], value: int) -> str:
    try:
        return f"{enum_type(value).name} ({value})"
    except ValueError:
        return str(value)


def type_names(types: bytes) -> str:
    """``b"\\x0d\\x19"`` -> ``"TLS (13), PEAP (25)"`` for log lines."""
    return ", ".join(_name(EapType, t) for t in types) or "none"


# --------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class EapPacket:
    """Code, Identifier, Length (derived), Type (Request/Response only), Type-Data."""

    code: int
    identifier: int
    type: int | None = None
    data: bytes = b""

    def encode(self) -> bytes:
        body = b"" if self.type is None else bytes([self.type]) + self.data
        return struct.pack("!BBH", self.code, self.identifier, 4 + len(body)) + body

    @classmethod
    def decode(cls, buf: bytes) -> EapPacket:
        """Octets beyond Length are padding and ignored (RFC 3748 §4.1); a Length beyond
        the octets received, an unknown Code, a Request/Response without Type or a
        Success/Failure with data are errors."""
        if len(buf) < 4:
            raise ParseError(f"EAP packet of {len(buf)} bytes, shorter than its header")
        code, identifier, length = struct.unpack_from("!BBH", buf)
        if length < 4 or length > len(buf):
            raise ParseError(f"EAP Length {length} does not fit the {len(buf)} bytes received")
        if code in (EapCode.REQUEST, EapCode.RESPONSE):
            if length < 5:
                raise ParseError(f"EAP {_name(EapCode, code)} without a Type")
            return cls(code, identifier, buf[4], bytes(buf[5:length]))
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            if length != 4:
                raise ParseError(f"EAP {_name(EapCode, code)} of Length {length}, not 4")
            return cls(code, identifier)
        raise ParseError(f"unknown EAP Code {code}")


@dataclass(frozen=True)
class MsChapV2Message:
    """EAP-MS-CHAP-V2 Type-Data: OpCode, MS-CHAPv2-ID, MS-Length (derived), data.

    ``short`` is the Success/Failure Response: the OpCode byte alone."""

    opcode: int
    ms_id: int = 0
    data: bytes = b""
    short: bool = False

    def encode(self) -> bytes:
        if self.short:
            return bytes([self.opcode])
        return struct.pack("!BBH", self.opcode, self.ms_id, 4 + len(self.data)) + self.data

    @classmethod
    def decode(cls, buf: bytes) -> MsChapV2Message:
        if len(buf) == 1 and buf[0] in (MsOpCode.SUCCESS, MsOpCode.FAILURE):
            return cls(buf[0], short=True)
        if len(buf) < 4:
            raise ParseError(f"EAP-MS-CHAP-V2 data of {len(buf)} bytes, shorter than its header")
        opcode, ms_id, ms_length = struct.unpack_from("!BBH", buf)
        if ms_length != len(buf):
            raise ParseError(f"MS-Length {ms_length} but {len(buf)} bytes of MS-CHAP-V2 data")
        return cls(opcode, ms_id, bytes(buf[4:]))


def challenge_data(challenge: bytes, name: bytes) -> bytes:
    return bytes([16]) + challenge + name


def response_data(peer_challenge: bytes, nt_response: bytes, name: bytes) -> bytes:
    """Value-Size 49, Peer-Challenge, 8 reserved zeros, NT-Response, Flags 0, Name."""
    return bytes([49]) + peer_challenge + bytes(8) + nt_response + b"\x00" + name


# --------------------------------------------------------------------------- authenticator


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
            self._discard(f"{_name(EapCode, eap.code)} from the client")
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
                self._discard(f"Response type {_name(EapType, eap.type)} to an Identity Request")
                return
            self.identity = eap.data.decode("utf-8", "replace").strip("\x00")
            self._user = mschap.strip_domain(self.identity)
            self._challenge = self._random(16)
            self._send_challenge((self._id + 1) & 0xFF, now)
        elif eap.type != EapType.MSCHAPV2:
            self._discard(f"Response type {_name(EapType, eap.type)} to an MS-CHAP-V2 Request")
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
            self._discard(f"{form}{_name(MsOpCode, op)} while {state.value}")
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


# --------------------------------------------------------------------------- peer


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
