"""RADIUS with the shared secret: authenticators, Message-Authenticator, hidden values.

Kept apart from :mod:`.codec` (layout) because this is the security-relevant part, read
on its own: every function here takes the shared secret, and each has known-answer or
round-trip tests. Authenticators: :func:`sign_access_request` (Message-Authenticator
first, BlastRADIUS, CVE-2024-3596), :func:`sign_request`/:func:`verify_request`
(Accounting-, Disconnect-, CoA-Request, RFC 2866 §3, RFC 5176 §2.3),
:func:`sign_reply`/:func:`verify_reply` (Response Authenticator and, when present or
required, Message-Authenticator of an answer, RFC 3579 §3.2). Hidden values:
User-Password (RFC 2865 §5.2) and the salt-encrypted MS-MPPE keys (RFC 2548 §2.4.2),
always decrypted with the Request Authenticator of *our* request, never with anything
taken from the answer.
"""

from __future__ import annotations

import hashlib
import hmac

from sstpd.proto.radius.codec import HEADER, Attr, RadiusPacket

__all__ = [
    "decrypt_password",
    "encrypt_password",
    "salt_decrypt",
    "salt_encrypt",
    "sign_access_request",
    "sign_reply",
    "sign_request",
    "verify_reply",
    "verify_request",
]


# ---------------------------------------------------------------- authenticators


def _md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts), usedforsecurity=False).digest()


def _hmac_md5(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, "md5").digest()


def _zero_message_authenticator(pkt: RadiusPacket, header_auth: bytes) -> bytes:
    zeroed = RadiusPacket(
        pkt.code,
        pkt.identifier,
        header_auth,
        [(t, bytes(16) if t == Attr.MESSAGE_AUTHENTICATOR else v) for t, v in pkt.attributes],
    )
    return zeroed.encode()


def sign_access_request(pkt: RadiusPacket, secret: bytes) -> bytes:
    """Encode an Access-Request (authenticator already random) with Message-Authenticator
    as the first attribute."""
    pkt.attributes = [(t, v) for t, v in pkt.attributes if t != Attr.MESSAGE_AUTHENTICATOR]
    pkt.attributes.insert(0, (Attr.MESSAGE_AUTHENTICATOR, bytes(16)))
    mac = _hmac_md5(secret, pkt.encode())
    pkt.attributes[0] = (Attr.MESSAGE_AUTHENTICATOR, mac)
    return pkt.encode()


def sign_request(pkt: RadiusPacket, secret: bytes) -> bytes:
    """Accounting-, Disconnect-, CoA-Request: authenticator = MD5 over the packet with a
    zero authenticator (RFC 2866 §3, RFC 5176 §2.3)."""
    pkt.authenticator = bytes(16)
    pkt.authenticator = _md5(pkt.encode(), secret)
    return pkt.encode()


def verify_request(data: bytes, pkt: RadiusPacket, secret: bytes) -> bool:
    """Check the authenticator of an Accounting-/Disconnect-/CoA-Request (and its
    Message-Authenticator when it carries one)."""
    length = HEADER.unpack_from(data)[2]
    expected = _md5(data[:4], bytes(16), data[20:length], secret)
    if not hmac.compare_digest(expected, pkt.authenticator):
        return False
    mac = pkt.get(Attr.MESSAGE_AUTHENTICATOR)
    if mac is not None:
        want = _hmac_md5(secret, _zero_message_authenticator(pkt, bytes(16)))
        return len(mac) == 16 and hmac.compare_digest(mac, want)
    return True


def sign_reply(
    pkt: RadiusPacket, request_authenticator: bytes, secret: bytes, *, message_auth: bool = True
) -> bytes:
    """Encode an answer (Accept/Reject, Accounting-Response, Disconnect-ACK/NAK): the
    Message-Authenticator is computed with the Request Authenticator in the header, then
    the Response Authenticator over the whole packet (RFC 3579 §3.2)."""
    pkt.attributes = [(t, v) for t, v in pkt.attributes if t != Attr.MESSAGE_AUTHENTICATOR]
    if message_auth:
        pkt.attributes.insert(0, (Attr.MESSAGE_AUTHENTICATOR, bytes(16)))
        pkt.authenticator = request_authenticator
        pkt.attributes[0] = (Attr.MESSAGE_AUTHENTICATOR, _hmac_md5(secret, pkt.encode()))
    pkt.authenticator = request_authenticator
    pkt.authenticator = _md5(pkt.encode(), secret)
    return pkt.encode()


def verify_reply(
    data: bytes,
    pkt: RadiusPacket,
    request_authenticator: bytes,
    secret: bytes,
    *,
    require_message_authenticator: bool,
) -> str:
    """ "" if ``pkt`` (decoded from ``data``) is a genuine answer to the request with
    ``request_authenticator``, else why not."""
    length = HEADER.unpack_from(data)[2]
    expected = _md5(data[:4], request_authenticator, data[20:length], secret)
    if not hmac.compare_digest(expected, pkt.authenticator):
        return "bad Response Authenticator"
    macs = pkt.get_all(Attr.MESSAGE_AUTHENTICATOR)
    if not macs:
        return "no Message-Authenticator" if require_message_authenticator else ""
    if len(macs) > 1 or len(macs[0]) != 16:
        return "malformed Message-Authenticator"
    want = _hmac_md5(secret, _zero_message_authenticator(pkt, request_authenticator))
    return "" if hmac.compare_digest(macs[0], want) else "bad Message-Authenticator"


# ---------------------------------------------------------------- hidden values


def encrypt_password(password: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """User-Password (RFC 2865 §5.2): padded to 16, chained MD5 XOR, at most 128 bytes."""
    p = password[:128]
    p += bytes(-len(p) % 16 or (16 if not p else 0))
    out = b""
    last = request_authenticator
    for i in range(0, len(p), 16):
        b = _md5(secret, last)
        c = bytes(x ^ y for x, y in zip(p[i : i + 16], b, strict=True))
        out += c
        last = c
    return out


def decrypt_password(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    out = b""
    last = request_authenticator
    for i in range(0, len(value) - len(value) % 16, 16):
        c = value[i : i + 16]
        out += bytes(x ^ y for x, y in zip(c, _md5(secret, last), strict=True))
        last = c
    return out.rstrip(b"\x00")


def salt_encrypt(plain: bytes, salt: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """RFC 2548 §2.4.2: Salt ‖ C, P = len ‖ key ‖ zero padding to a multiple of 16."""
    p = bytes([len(plain)]) + plain
    p += bytes(-len(p) % 16)
    out = b""
    last = request_authenticator + salt
    for i in range(0, len(p), 16):
        c = bytes(x ^ y for x, y in zip(p[i : i + 16], _md5(secret, last), strict=True))
        out += c
        last = c
    return salt + out


def salt_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes | None:
    """The key inside an MS-MPPE-Send/Recv-Key value, or None when it is malformed.

    Each block is chained on the previous *ciphertext* block (pyrad <= 2.5.4 chained on the
    plaintext and corrupted the 16th key byte)."""
    if len(value) < 18 or (len(value) - 2) % 16 or not value[0] & 0x80:
        return None
    salt, c = value[:2], value[2:]
    p = b""
    last = request_authenticator + salt
    for i in range(0, len(c), 16):
        block = c[i : i + 16]
        p += bytes(x ^ y for x, y in zip(block, _md5(secret, last), strict=True))
        last = block
    n = p[0]
    if n == 0 or n > len(p) - 1:
        return None
    return p[1 : 1 + n]
