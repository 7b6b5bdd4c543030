"""What a VPN session asks of RADIUS and what it takes from the answer (sans-I/O).

* :func:`access_request` turns an ``auth.VerifyRequest`` (PAP or MS-CHAPv2, from PPP or
  EAP-MSCHAPv2 terminated here) into an Access-Request (docs/protocol/radius.md §2);
* :func:`interpret` turns the verified Accept/Reject into an ``auth.Verdict`` plus a
  :class:`Grant` (Framed-IP-Address, Framed-IPv6-Prefix, timeouts, Class, ...) for the
  I/O layer; an Accept for MS-CHAPv2 without both MS-MPPE keys is a failure: the crypto
  binding could not be verified with a zero HLAK while the client computes a real one
  (docs/protocol/radius.md §3);
* :func:`accounting_request` builds Start / Interim-Update / Stop (docs/protocol/radius.md §6).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network

from sstpd.proto import radius
from sstpd.proto.ppp.auth.common import MSCHAPV2, PAP, ZERO_HLAK, Verdict, VerifyRequest
from sstpd.proto.radius import Attr, Code, Ms, RadiusPacket

__all__ = [
    "Grant",
    "NasInfo",
    "access_request",
    "accounting_request",
    "delegated_note",
    "interpret",
]

SERVICE_FRAMED = 2
PROTOCOL_PPP = 1
PORT_TYPE_VIRTUAL = 5
TUNNEL_TYPE_SSTP = bytes.fromhex("00013701")  # tag 0, SSTP ([MS-RNAP], docs/protocol/radius.md §2)
ACCT_START, ACCT_STOP, ACCT_INTERIM = 1, 2, 3
ACCT_ON, ACCT_OFF = 7, 8  # the NAS (re)started / stops: the server may close what it holds
INTERFACE_ID_LEN = 8  # Framed-Interface-Id (RFC 3162 §2.2): an IPV6CP identifier
_ERROR_CODE = re.compile(rb"E=(\d+)")
_SUCCESS = re.compile(rb"S=[0-9A-Fa-f]{40}")


@dataclass(frozen=True)
class NasInfo:
    """Who we are to the RADIUS server."""

    identifier: str = "sstpd"
    ip_address: IPv4Address | None = None


@dataclass(frozen=True)
class Grant:
    """Authorization from an Access-Accept the I/O layer applies to the session."""

    framed_ip: IPv4Address | None = None
    # Framed-IPv6-Prefix (RFC 3162): the first one as sent; the I/O layer checks it is a
    # /64 of the pool. ``framed_ipv6_malformed``: one was sent but could not be read
    framed_ipv6_prefix: IPv6Network | None = None
    framed_ipv6_malformed: bool = False
    # Delegated-IPv6-Prefix (RFC 4818), as sent: sstpd does no DHCPv6 prefix delegation,
    # so these are not applied; the I/O layer tells the admin (``delegated_note``)
    delegated_ipv6_prefixes: tuple[bytes, ...] = ()
    session_timeout: int | None = None
    idle_timeout: int | None = None
    interim_interval: int | None = None
    classes: tuple[bytes, ...] = ()
    reply_message: str = ""


def _common(pkt: RadiusPacket, nas: NasInfo, calling: str) -> None:
    if nas.identifier:
        pkt.add_str(Attr.NAS_IDENTIFIER, nas.identifier)
    if nas.ip_address is not None:
        pkt.add(Attr.NAS_IP_ADDRESS, nas.ip_address.packed)
    pkt.add_int(Attr.SERVICE_TYPE, SERVICE_FRAMED)
    pkt.add_int(Attr.FRAMED_PROTOCOL, PROTOCOL_PPP)
    pkt.add_int(Attr.NAS_PORT_TYPE, PORT_TYPE_VIRTUAL)
    if calling:
        pkt.add_str(Attr.CALLING_STATION_ID, calling)


def access_request(
    req: VerifyRequest,
    *,
    identifier: int,
    authenticator: bytes,
    secret: bytes,
    nas: NasInfo,
    calling_station: str = "",
) -> tuple[RadiusPacket, bytes]:
    """The Access-Request for ``req`` and its encoding (Message-Authenticator first).

    ``authenticator`` must be 16 fresh random bytes; keep it to check the answer."""
    pkt = RadiusPacket(Code.ACCESS_REQUEST, identifier, authenticator)
    pkt.add_str(Attr.USER_NAME, req.name or req.user)
    if req.method == PAP:
        pkt.add(
            Attr.USER_PASSWORD,
            radius.encrypt_password(req.password.encode("utf-8"), secret, authenticator),
        )
    else:
        pkt.add_ms(Ms.CHAP_CHALLENGE, req.authenticator_challenge)
        pkt.add_ms(
            Ms.CHAP2_RESPONSE,
            bytes([req.identifier & 0xFF, 0]) + req.peer_challenge + bytes(8) + req.nt_response,
        )
    _common(pkt, nas, calling_station)
    return pkt, radius.sign_access_request(pkt, secret)


_NAS_CHOOSES = (IPv4Address("255.255.255.254"), IPv4Address("255.255.255.255"))


def _grant(pkt: RadiusPacket) -> Grant:
    framed = pkt.get_ipv4(Attr.FRAMED_IP_ADDRESS)
    raw6 = pkt.get(Attr.FRAMED_IPV6_PREFIX)
    prefix6 = radius.decode_ipv6_prefix(raw6) if raw6 is not None else None
    return Grant(
        framed_ip=None if framed in _NAS_CHOOSES else framed,  # RFC 2865 §5.8: the pool
        framed_ipv6_prefix=prefix6,
        framed_ipv6_malformed=raw6 is not None and prefix6 is None,
        delegated_ipv6_prefixes=tuple(pkt.get_all(Attr.DELEGATED_IPV6_PREFIX)),
        session_timeout=pkt.get_int(Attr.SESSION_TIMEOUT),
        idle_timeout=pkt.get_int(Attr.IDLE_TIMEOUT),
        interim_interval=pkt.get_int(Attr.ACCT_INTERIM_INTERVAL),
        classes=tuple(pkt.get_all(Attr.CLASS)),
        reply_message="".join(
            v.decode("utf-8", "replace") for v in pkt.get_all(Attr.REPLY_MESSAGE)
        ),
    )


def delegated_note(grant: Grant) -> str | None:
    """What to tell the admin about a Delegated-IPv6-Prefix the Accept carried (None: it
    carried none): it is ignored, and why. The values are prefixes, nothing secret."""
    if not grant.delegated_ipv6_prefixes:
        return None
    shown = []
    for raw in grant.delegated_ipv6_prefixes:
        prefix = radius.decode_ipv6_prefix(raw)
        shown.append(str(prefix) if prefix is not None else f"malformed {raw.hex()}")
    return (
        f"Delegated-IPv6-Prefix (123) {', '.join(shown)} ignored: not supported, sstpd does "
        "no DHCPv6 prefix delegation (the session gets only its /64: Framed-IPv6-Prefix or "
        "tunnel.ipv6_pool)"
    )


def interpret(
    req: VerifyRequest, answer: RadiusPacket, secret: bytes, request_authenticator: bytes
) -> tuple[Verdict, Grant]:
    """The verdict of a *verified* Access-Accept/Reject (see ``radius.verify_reply``)."""
    grant = _grant(answer)
    message = grant.reply_message.replace("\n", " ")[:200]
    if answer.code != Code.ACCESS_ACCEPT:
        code = 691
        err = answer.ms(Ms.CHAP_ERROR)
        if err is not None and (m := _ERROR_CODE.search(err)):
            code = int(m.group(1))
        what = (
            "Access-Challenge (not supported)"
            if answer.code == Code.ACCESS_CHALLENGE
            else ("Access-Reject")
        )
        reason = f"{what}" + (f": {message}" if message else "")
        return Verdict(False, code=code, reason=reason), grant
    if req.method == PAP:
        return Verdict(True, message=message or "Welcome"), grant
    assert req.method == MSCHAPV2
    success = answer.ms(Ms.CHAP2_SUCCESS)
    m = _SUCCESS.search(success[1:]) if success is not None else None
    if success is None or m is None or success[0] != req.identifier & 0xFF:
        return Verdict(False, reason="Access-Accept without a valid MS-CHAP2-Success"), grant
    send_raw, recv_raw = answer.ms(Ms.MPPE_SEND_KEY), answer.ms(Ms.MPPE_RECV_KEY)
    send = radius.salt_decrypt(send_raw, secret, request_authenticator) if send_raw else None
    recv = radius.salt_decrypt(recv_raw, secret, request_authenticator) if recv_raw else None
    if send is None or recv is None or len(send) + len(recv) < 32:
        return (
            Verdict(
                False,
                reason="Access-Accept without MS-MPPE-Send-Key/Recv-Key: the crypto binding "
                "cannot be verified (enable MPPE keys in the RADIUS policy)",
            ),
            grant,
        )
    hlak = (recv + send)[:32]
    if hmac.compare_digest(hlak, ZERO_HLAK):
        return Verdict(False, reason="Access-Accept with all-zero MPPE keys"), grant
    return (
        Verdict(
            True,
            authenticator_response=m.group(0).decode(),
            hlak=hlak,
            message=message or "Welcome",
        ),
        grant,
    )


@dataclass(frozen=True)
class AcctRecord:
    """One session's accounting facts at one moment."""

    session_id: str
    user: str
    status: int
    session_time: int = 0
    input_octets: int = 0
    output_octets: int = 0
    input_packets: int = 0
    output_packets: int = 0
    framed_ip: IPv4Address | None = None
    framed_ipv6_prefix: IPv6Network | None = None  # while IPv6 is open (RFC 3162)
    framed_interface_id: bytes | None = None  # the peer's IPV6CP interface identifier
    calling_station: str = ""
    classes: tuple[bytes, ...] = ()
    terminate_cause: int | None = None
    delay: int = 0


def accounting_request(
    rec: AcctRecord, *, identifier: int, secret: bytes, nas: NasInfo
) -> tuple[RadiusPacket, bytes]:
    """An Accounting-Request for ``rec`` (RFC 2866), signed; octets split into Gigawords."""
    pkt = RadiusPacket(Code.ACCOUNTING_REQUEST, identifier)
    pkt.add_int(Attr.ACCT_STATUS_TYPE, rec.status)
    pkt.add_str(Attr.ACCT_SESSION_ID, rec.session_id)
    if rec.status in (ACCT_ON, ACCT_OFF):
        _common(pkt, nas, "")
        if rec.delay:
            pkt.add_int(Attr.ACCT_DELAY_TIME, rec.delay)
        return pkt, radius.sign_request(pkt, secret)
    pkt.add_str(Attr.USER_NAME, rec.user or "-")
    pkt.add_int(Attr.ACCT_AUTHENTIC, 1)
    _common(pkt, nas, rec.calling_station)
    pkt.add(Attr.TUNNEL_TYPE, TUNNEL_TYPE_SSTP)
    if rec.framed_ip is not None:
        pkt.add(Attr.FRAMED_IP_ADDRESS, rec.framed_ip.packed)
    if rec.framed_ipv6_prefix is not None:
        pkt.add(Attr.FRAMED_IPV6_PREFIX, radius.encode_ipv6_prefix(rec.framed_ipv6_prefix))
    if rec.framed_interface_id is not None and len(rec.framed_interface_id) == INTERFACE_ID_LEN:
        pkt.add(Attr.FRAMED_INTERFACE_ID, rec.framed_interface_id)
    for c in rec.classes:
        pkt.add(Attr.CLASS, c)
    if rec.status != ACCT_START:
        pkt.add_int(Attr.ACCT_SESSION_TIME, rec.session_time)
        pkt.add_int(Attr.ACCT_INPUT_OCTETS, rec.input_octets)
        pkt.add_int(Attr.ACCT_OUTPUT_OCTETS, rec.output_octets)
        pkt.add_int(Attr.ACCT_INPUT_GIGAWORDS, rec.input_octets >> 32)
        pkt.add_int(Attr.ACCT_OUTPUT_GIGAWORDS, rec.output_octets >> 32)
        pkt.add_int(Attr.ACCT_INPUT_PACKETS, rec.input_packets)
        pkt.add_int(Attr.ACCT_OUTPUT_PACKETS, rec.output_packets)
    if rec.status == ACCT_STOP and rec.terminate_cause is not None:
        pkt.add_int(Attr.ACCT_TERMINATE_CAUSE, rec.terminate_cause)
    if rec.delay:
        pkt.add_int(Attr.ACCT_DELAY_TIME, rec.delay)
    return pkt, radius.sign_request(pkt, secret)


# ---------------------------------------------------------------- Disconnect (RFC 5176)


SESSION_PREFIXLEN = 64  # every session's IPv6 prefix is a /64 (tunnel.ipv6_pool)


@dataclass(frozen=True)
class DisconnectCriteria:
    """Which sessions a Disconnect-Request names; a session must match every one given.

    ``framed_ipv6_prefix`` matches the session holding exactly that /64 (the one it holds
    now, as ``sstpctl sessions`` shows it); any other prefix length matches no session,
    even one whose /64 lies inside it: a Disconnect-Request names a session, not a range.
    ``framed_interface_id`` (8 bytes) matches the session whose peer negotiated that
    IPV6CP interface identifier, while its IPv6 is open: the value accounting reports.
    """

    user: str | None = None
    session_id: str | None = None
    framed_ip: IPv4Address | None = None
    framed_ipv6_prefix: IPv6Network | None = None
    framed_interface_id: bytes | None = None

    @property
    def empty(self) -> bool:
        return (
            self.user is None
            and self.session_id is None
            and self.framed_ip is None
            and self.framed_ipv6_prefix is None
            and self.framed_interface_id is None
        )

    def matches(
        self,
        user: str,
        session_id: str,
        framed_ip: IPv4Address | None,
        prefix6: IPv6Network | None = None,
        interface_id6: bytes | None = None,
    ) -> bool:
        want6 = self.framed_ipv6_prefix
        iid = self.framed_interface_id
        return (
            (self.user is None or self.user == user)
            and (self.session_id is None or self.session_id == session_id)
            and (self.framed_ip is None or self.framed_ip == framed_ip)
            and (want6 is None or (want6.prefixlen == SESSION_PREFIXLEN and want6 == prefix6))
            and (iid is None or (interface_id6 is not None and iid == interface_id6))
        )


class InvalidAttribute(ValueError):
    """A Disconnect-Request attribute that names a session cannot be read (Error-Cause 407):
    answering as if it were absent could end more sessions than were named."""


def disconnect_criteria(pkt: RadiusPacket) -> DisconnectCriteria:
    """The identification attributes of a Disconnect-Request (User-Name, Acct-Session-Id,
    Framed-IP-Address, Framed-IPv6-Prefix, Framed-Interface-Id); others are ignored.
    InvalidAttribute for a malformed Framed-IPv6-Prefix (RFC 8044 §3.10: see
    ``radius.decode_ipv6_prefix``), a Framed-IP-Address that is not 4 bytes or a
    Framed-Interface-Id that is not 8 (RFC 3162 §2.2)."""
    raw6 = pkt.get(Attr.FRAMED_IPV6_PREFIX)
    prefix6 = radius.decode_ipv6_prefix(raw6) if raw6 is not None else None
    if raw6 is not None and prefix6 is None:
        raise InvalidAttribute(f"malformed Framed-IPv6-Prefix {raw6.hex()}")
    raw4 = pkt.get(Attr.FRAMED_IP_ADDRESS)
    if raw4 is not None and len(raw4) != 4:
        raise InvalidAttribute(f"malformed Framed-IP-Address {raw4.hex()}")
    iid = pkt.get(Attr.FRAMED_INTERFACE_ID)
    if iid is not None and len(iid) != INTERFACE_ID_LEN:
        raise InvalidAttribute(f"malformed Framed-Interface-Id {iid.hex()}")
    return DisconnectCriteria(
        user=pkt.get_str(Attr.USER_NAME),
        session_id=pkt.get_str(Attr.ACCT_SESSION_ID),
        framed_ip=pkt.get_ipv4(Attr.FRAMED_IP_ADDRESS),
        framed_ipv6_prefix=prefix6,
        framed_interface_id=iid,
    )


def dae_reply(request: RadiusPacket, error_cause: int | None, secret: bytes) -> bytes:
    """Disconnect-ACK (``error_cause`` None) or -NAK, CoA-NAK for a CoA-Request; signed with
    Message-Authenticator. Proxy-State is echoed (RFC 5176 §3)."""
    if request.code == Code.COA_REQUEST:
        code = Code.COA_NAK
    else:
        code = Code.DISCONNECT_ACK if error_cause is None else Code.DISCONNECT_NAK
    reply = RadiusPacket(code, request.identifier)
    if error_cause is not None:
        reply.add_int(Attr.ERROR_CAUSE, error_cause)
    for v in request.get_all(Attr.PROXY_STATE):
        reply.add(Attr.PROXY_STATE, v)
    return radius.sign_reply(reply, request.authenticator, secret)
