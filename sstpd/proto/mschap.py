"""MS-CHAPv2 (RFC 2759) and MPPE master keys (RFC 3079), with the primitives they need.

hashlib's MD4 is gone under OpenSSL 3's default provider and ``cryptography`` offers no
MD4, so MD4 is a small pure-Python implementation here (a few 64-byte blocks per
authentication: about 30 µs). Single DES is not in the standard library; it is taken from
``cryptography`` as TripleDES with the 8-byte key repeated three times (EDE with
K1 = K2 = K3 is single DES), about 30 times faster than pure Python, whose DES was
half the server's handshake CPU (docs/PERFORMANCE-NOTES.md). The pure-Python DES stays as
the fallback when that import or cipher is unavailable, and both are pinned by the
RFC 1320 / RFC 2759 vectors and checked against each other in ``tests/unit/test_mschap.py``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

__all__ = [
    "DES_IMPLEMENTATION",
    "asymmetric_start_key",
    "authenticator_response",
    "challenge_hash",
    "des_encrypt_block",
    "des_encrypt_block_pure",
    "expand_des_key",
    "generate_nt_response",
    "hlak",
    "master_key",
    "md4",
    "nt_password_hash",
    "password_hash_hash",
    "strip_domain",
]

# --------------------------------------------------------------------------- MD4 (RFC 1320)

_MASK32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    x &= _MASK32
    return ((x << n) | (x >> (32 - n))) & _MASK32


def md4(data: bytes) -> bytes:
    """MD4 digest of ``data`` (RFC 1320)."""
    msg = bytes(data) + b"\x80"
    msg += b"\x00" * ((56 - len(msg)) % 64)
    msg += struct.pack("<Q", (len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack_from("<16I", msg, off)
        aa, bb, cc, dd = a, b, c, d
        for i in range(16):  # round 1: F(b, c, d) = (b & c) | (~b & d)
            s = (3, 7, 11, 19)[i % 4]
            a = _rotl(a + ((b & c) | (~b & d)) + x[i], s)
            a, b, c, d = d, a, b, c
        for i in range(16):  # round 2: G = majority, constant sqrt(2)
            k = (i % 4) * 4 + i // 4
            s = (3, 5, 9, 13)[i % 4]
            a = _rotl(a + ((b & c) | (b & d) | (c & d)) + x[k] + 0x5A827999, s)
            a, b, c, d = d, a, b, c
        for i in range(16):  # round 3: H = parity, constant sqrt(3)
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            a = _rotl(a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1, s)
            a, b, c, d = d, a, b, c
        a = (a + aa) & _MASK32
        b = (b + bb) & _MASK32
        c = (c + cc) & _MASK32
        d = (d + dd) & _MASK32
    return struct.pack("<4I", a, b, c, d)


# --------------------------------------------------------------------------- DES (FIPS 46-3)
# Tables use the standard's 1-based bit numbering, bit 1 being the most significant.

_IP = (
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
)  # fmt: skip
_FP = tuple(_IP.index(i) + 1 for i in range(1, 65))
_E = (
    32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
    16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
)  # fmt: skip
_P = (
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
)  # fmt: skip
_PC1 = (
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
)  # fmt: skip
_PC2 = (
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
)  # fmt: skip
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_SBOX = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
     0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
     15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
     3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
     13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
     13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
     1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
     13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
     3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
     14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
     11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
     10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
     4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
     13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
     6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
     1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
     2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)  # fmt: skip


def _permute(value: int, width: int, table: tuple[int, ...]) -> int:
    out = 0
    for pos in table:
        out = (out << 1) | ((value >> (width - pos)) & 1)
    return out


def _subkeys(key: bytes) -> list[int]:
    cd = _permute(int.from_bytes(key, "big"), 64, _PC1)
    c, d = cd >> 28, cd & 0xFFFFFFF
    keys = []
    for shift in _SHIFTS:
        c = ((c << shift) | (c >> (28 - shift))) & 0xFFFFFFF
        d = ((d << shift) | (d >> (28 - shift))) & 0xFFFFFFF
        keys.append(_permute((c << 28) | d, 56, _PC2))
    return keys


def _feistel(r: int, subkey: int) -> int:
    x = _permute(r, 32, _E) ^ subkey
    out = 0
    for i in range(8):
        six = (x >> (42 - 6 * i)) & 0x3F
        row = ((six >> 4) & 2) | (six & 1)
        out = (out << 4) | _SBOX[i][row * 16 + ((six >> 1) & 0xF)]
    return _permute(out, 32, _P)


def expand_des_key(key7: bytes) -> bytes:
    """Spread 56 key bits over 8 bytes, 7 bits each (the low parity bit is left zero)."""
    if len(key7) != 7:
        raise ValueError("DES key must be 7 bytes")
    bits = int.from_bytes(key7, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des_key_and_block(key: bytes, block: bytes) -> bytes:
    if len(key) == 7:
        key = expand_des_key(key)
    if len(key) != 8 or len(block) != 8:
        raise ValueError("DES needs an 8-byte key and an 8-byte block")
    return key


def des_encrypt_block_pure(key: bytes, block: bytes) -> bytes:
    """DES-ECB of one 8-byte block in pure Python (FIPS 46-3); the fallback."""
    key = _des_key_and_block(key, block)
    lr = _permute(int.from_bytes(block, "big"), 64, _IP)
    left, right = lr >> 32, lr & _MASK32
    for subkey in _subkeys(key):
        left, right = right, left ^ _feistel(right, subkey)
    return _permute((right << 32) | left, 64, _FP).to_bytes(8, "big")


def _load_triple_des() -> Callable[[bytes], Any] | None:
    """``cryptography``'s TripleDES class, or None. It lives in ``hazmat.decrepit`` since
    cryptography 43; 41-42 have it only in ``primitives`` (deprecated there since 43)."""
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        return TripleDES  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from cryptography.hazmat.primitives.ciphers.algorithms import (  # type: ignore[attr-defined,unused-ignore]
            TripleDES as LegacyTripleDES,
        )

        return LegacyTripleDES  # type: ignore[no-any-return]
    except ImportError:
        return None


def _make_des_library() -> Callable[[bytes, bytes], bytes] | None:
    triple_des = _load_triple_des()
    if triple_des is None:
        return None
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    ecb = modes.ECB()

    def encrypt(key: bytes, block: bytes) -> bytes:
        # EDE with three equal keys is single DES; a 24-byte key avoids the deprecation
        # warning cryptography >= 46 gives for 8-byte TripleDES keys.
        enc = Cipher(triple_des(key * 3), ecb).encryptor()
        return bytes(enc.update(block)) + bytes(enc.finalize())

    try:  # FIPS 81 / NBS known answer: refuse a library that cannot do it
        ok = encrypt(bytes.fromhex("0123456789abcdef"), b"Now is t") == bytes.fromhex(
            "3fa40e8a984d4815"
        )
    except Exception:  # UnsupportedAlgorithm, or an OpenSSL built without 3DES
        return None
    return encrypt if ok else None


_des_library = _make_des_library()

#: Which DES ``des_encrypt_block`` uses: ``"cryptography"`` or ``"pure-python"``.
DES_IMPLEMENTATION = "cryptography" if _des_library is not None else "pure-python"


def des_encrypt_block(key: bytes, block: bytes) -> bytes:
    """DES-ECB encryption of one 8-byte block; ``key`` is 8 bytes, or 7 to be expanded."""
    if _des_library is None:
        return des_encrypt_block_pure(key, block)
    return _des_library(_des_key_and_block(key, block), bytes(block))


# --------------------------------------------------------------------------- RFC 2759 / 3079

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_MASTER_MAGIC = b"This is the MPPE Master Key"
_KEY_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_KEY_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = b"\x00" * 40
_SHS_PAD2 = b"\xf2" * 40


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.digest()


def strip_domain(name: str) -> str:
    """``DOMAIN\\user`` -> ``user`` (RFC 2759 §8.2: the hash uses the bare user name)."""
    return name.rpartition("\\")[2]


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash: MD4 of the UTF-16LE password, no terminator (RFC 2759 §8.3)."""
    return md4(password.encode("utf-16-le", "surrogatepass"))


def password_hash_hash(nt_hash: bytes) -> bytes:
    """HashNtPasswordHash (RFC 2759 §8.4)."""
    return md4(nt_hash)


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: str) -> bytes:
    """ChallengeHash (RFC 2759 §8.2); ``username`` without any domain prefix."""
    return _sha1(peer_challenge, authenticator_challenge, username.encode("utf-8"))[:8]


def _challenge_response(challenge: bytes, nt_hash: bytes) -> bytes:
    z = nt_hash + b"\x00" * (21 - len(nt_hash))
    return b"".join(des_encrypt_block(z[i : i + 7], challenge) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: str, nt_hash: bytes
) -> bytes:
    """GenerateNTResponse (RFC 2759 §8.1): 24 bytes."""
    ch = challenge_hash(peer_challenge, authenticator_challenge, strip_domain(username))
    return _challenge_response(ch, nt_hash)


def authenticator_response(
    nt_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str,
) -> str:
    """GenerateAuthenticatorResponse (RFC 2759 §8.7): ``"S="`` + 40 upper-case hex digits."""
    digest = _sha1(password_hash_hash(nt_hash), nt_response, _MAGIC1)
    ch = challenge_hash(peer_challenge, authenticator_challenge, strip_domain(username))
    return "S=" + _sha1(digest, ch, _MAGIC2).hex().upper()


def master_key(nt_hash: bytes, nt_response: bytes) -> bytes:
    """GetMasterKey (RFC 3079 §3.4): 16 bytes."""
    return _sha1(password_hash_hash(nt_hash), nt_response, _MASTER_MAGIC)[:16]


def asymmetric_start_key(master: bytes, length: int, *, is_send: bool, is_server: bool) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 §3.4)."""
    magic = _KEY_MAGIC3 if is_send == is_server else _KEY_MAGIC2
    return _sha1(master[:16], _SHS_PAD1, magic, _SHS_PAD2)[:length]


def hlak(nt_hash: bytes, nt_response: bytes) -> bytes:
    """SSTP Higher-Layer Authentication Key for MS-CHAPv2 (MS-SSTP §3.2.5.2.4), 32 bytes.

    Server MasterReceiveKey || server MasterSendKey, which equals client MasterSendKey ||
    client MasterReceiveKey: both ends compute the same bytes with this one function.
    """
    mk = master_key(nt_hash, nt_response)
    receive = asymmetric_start_key(mk, 16, is_send=False, is_server=True)
    send = asymmetric_start_key(mk, 16, is_send=True, is_server=True)
    return receive + send
