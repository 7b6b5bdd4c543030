"""Wire constants of [MS-SSTP] (section numbers refer to v20240423)."""

from __future__ import annotations

import enum

#: Version byte of every SSTP packet: major 1, minor 0 (§2.2.1).
SSTP_VERSION = 0x10

#: The length field has 12 bits, so no packet (header included) is longer (§2.2.1, §3.1.5.2).
MAX_PACKET_SIZE = 4095

#: Size of the fixed SSTP packet header (version, C bit, length).
HEADER_SIZE = 4

#: The only Protocol ID defined for the Encapsulated Protocol ID attribute (§2.2.5).
ENCAPSULATED_PROTOCOL_PPP = 0x0001

#: Request URI of the HTTP upgrade (§3.2.4.1). The GUID is compared case-insensitively.
SSTP_PATH = "/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/"

#: HTTP method of the upgrade request (§3.2.4.1).
SSTP_METHOD = "SSTP_DUPLEX_POST"

#: Content-Length of the request and of the 200 response: ULONGLONG_MAX (§3.2.4.1, §4.1).
SSTP_CONTENT_LENGTH = 18446744073709551615

#: Length of the nonce in the Crypto Binding (Request) attributes (§2.2.6, §2.2.7).
NONCE_SIZE = 32

#: Status Info's AttribValue is truncated to this many bytes (§2.2.8).
MAX_STATUS_VALUE = 64


@enum.unique
class MessageType(enum.IntEnum):
    """Control message types (§2.2.2)."""

    CALL_CONNECT_REQUEST = 0x0001
    CALL_CONNECT_ACK = 0x0002
    CALL_CONNECT_NAK = 0x0003
    CALL_CONNECTED = 0x0004
    CALL_ABORT = 0x0005
    CALL_DISCONNECT = 0x0006
    CALL_DISCONNECT_ACK = 0x0007
    ECHO_REQUEST = 0x0008
    ECHO_RESPONSE = 0x0009


@enum.unique
class AttributeId(enum.IntEnum):
    """Attribute IDs (§2.2.4). NO_ERROR is only valid as the AttribID inside a Status Info."""

    NO_ERROR = 0x00
    ENCAPSULATED_PROTOCOL_ID = 0x01
    STATUS_INFO = 0x02
    CRYPTO_BINDING = 0x03
    CRYPTO_BINDING_REQ = 0x04


@enum.unique
class Status(enum.IntEnum):
    """The Status field of a Status Info attribute (§2.2.8)."""

    NO_ERROR = 0x00000000
    DUPLICATE_ATTRIBUTE = 0x00000001
    UNRECOGNIZED_ATTRIBUTE = 0x00000002
    INVALID_ATTRIB_VALUE_LENGTH = 0x00000003
    VALUE_NOT_SUPPORTED = 0x00000004
    UNACCEPTED_FRAME_RECEIVED = 0x00000005
    RETRY_COUNT_EXCEEDED = 0x00000006
    INVALID_FRAME_RECEIVED = 0x00000007
    NEGOTIATION_TIMEOUT = 0x00000008
    ATTRIB_NOT_SUPPORTED_IN_MSG = 0x00000009
    REQUIRED_ATTRIBUTE_MISSING = 0x0000000A
    STATUS_INFO_NOT_SUPPORTED_IN_MSG = 0x0000000B


@enum.unique
class HashProtocol(enum.IntFlag):
    """Certificate hash protocols of the crypto binding (§2.2.6 bitmask, §2.2.7 one value)."""

    SHA1 = 0x01
    SHA256 = 0x02


def status_name(value: int) -> str:
    """``Status`` member name for ``value``, or its hex form when the peer sent an unknown code."""
    try:
        return Status(value).name
    except ValueError:
        return f"0x{value:08x}"
