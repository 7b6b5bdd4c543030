"""RADIUS (RFC 2865/2866/2869/3579/5176) packets, sans-I/O: encode, decode, sign, verify.

What the daemon needs from RADIUS and nothing more: Access-Request for PAP and MS-CHAPv2
(RFC 2548 Microsoft attributes), the Accept/Reject it gets back, Accounting-Request, and
Disconnect-Request/ACK/NAK for dynamic authorization. No socket and no clock here: the
I/O layer (``sstpd.aio.radius``) sends the bytes, keeps the timers and picks the server.

Security rules (BlastRADIUS, CVE-2024-3596): every Access-Request carries
Message-Authenticator as its *first* attribute; :func:`verify_reply` checks the Response
Authenticator and, when present or required, the Message-Authenticator of an answer.
The MS-MPPE keys are salt-decrypted with the Request Authenticator of *our* request
(RFC 2548 §2.4.2), never with anything taken from the answer.

Attributes are kept as an ordered list of ``(type, value)``; Microsoft VSAs as
``(26, vendor-specific bytes)``, read with :func:`ms_attributes`.

The modules: ``codec`` (``RadiusPacket``, ``decode``, VSAs, Framed-IPv6-Prefix, the
attribute and code numbers), ``crypto`` (Request/Response authenticators,
Message-Authenticator, User-Password and MPPE-key hiding). This package re-exports every
name they define.
"""

from __future__ import annotations

from sstpd.proto.radius.codec import (
    ERROR_INVALID_ATTRIBUTE_VALUE,
    ERROR_INVALID_REQUEST,
    ERROR_MISSING_ATTRIBUTE,
    ERROR_SESSION_NOT_FOUND,
    HEADER,
    MAX_PACKET,
    MICROSOFT,
    TERMINATE_ADMIN_RESET,
    TERMINATE_IDLE_TIMEOUT,
    TERMINATE_LOST_CARRIER,
    TERMINATE_NAS_ERROR,
    TERMINATE_NAS_REBOOT,
    TERMINATE_NAS_REQUEST,
    TERMINATE_SESSION_TIMEOUT,
    TERMINATE_USER_ERROR,
    TERMINATE_USER_REQUEST,
    Attr,
    Attributes,
    Code,
    Ms,
    RadiusPacket,
    decode,
    decode_ipv6_prefix,
    encode_ipv6_prefix,
    encode_vsa,
    ms_attributes,
)
from sstpd.proto.radius.crypto import (
    decrypt_password,
    encrypt_password,
    salt_decrypt,
    salt_encrypt,
    sign_access_request,
    sign_reply,
    sign_request,
    verify_reply,
    verify_request,
)

__all__ = [
    "ERROR_INVALID_ATTRIBUTE_VALUE",
    "ERROR_INVALID_REQUEST",
    "ERROR_MISSING_ATTRIBUTE",
    "ERROR_SESSION_NOT_FOUND",
    "HEADER",
    "MAX_PACKET",
    "MICROSOFT",
    "TERMINATE_ADMIN_RESET",
    "TERMINATE_IDLE_TIMEOUT",
    "TERMINATE_LOST_CARRIER",
    "TERMINATE_NAS_ERROR",
    "TERMINATE_NAS_REBOOT",
    "TERMINATE_NAS_REQUEST",
    "TERMINATE_SESSION_TIMEOUT",
    "TERMINATE_USER_ERROR",
    "TERMINATE_USER_REQUEST",
    "Attr",
    "Attributes",
    "Code",
    "Ms",
    "RadiusPacket",
    "decode",
    "decode_ipv6_prefix",
    "decrypt_password",
    "encode_ipv6_prefix",
    "encode_vsa",
    "encrypt_password",
    "ms_attributes",
    "salt_decrypt",
    "salt_encrypt",
    "sign_access_request",
    "sign_reply",
    "sign_request",
    "verify_reply",
    "verify_request",
]
