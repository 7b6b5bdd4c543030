"""Jinja filters of the sstpd role (run on the controller).

* ``password | sstpd_nt_hash``: the NT hash (MD4 of the UTF-16LE password) as 32 hex
  digits, what the users file stores. Computed in memory on the controller, so the
  password (from Ansible Vault, say) is never written to any file.
* ``value | sstpd_toml``: a TOML value (string, integer, float, boolean or list of them).
* ``pool | sstpd_overlaps(networks)``: the entries of ``networks`` ("address/prefix" or
  "address/netmask") that overlap the IPv4 network ``pool``.
* ``value | sstpd_ipv4_problem('address'|'network')``: "" or why it is not one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import struct

from ansible.errors import AnsibleFilterError


def _md4(data: bytes) -> bytes:
    """RFC 1320 MD4 (OpenSSL 3 no longer offers it through hashlib by default)."""
    try:
        return hashlib.new("md4", data).digest()
    except ValueError:
        pass

    def rotl(x: int, n: int) -> int:
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    msg = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        a, b, c, d = h
        for i in range(16):  # round 1
            k, s = i, (3, 7, 11, 19)[i % 4]
            a = rotl(a + ((b & c) | (~b & d)) + x[k], s)
            a, b, c, d = d, a, b, c
        for i in range(16):  # round 2
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            a = rotl(a + ((b & c) | (b & d) | (c & d)) + x[k] + 0x5A827999, s)
            a, b, c, d = d, a, b, c
        for i in range(16):  # round 3
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            a = rotl(a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1, s)
            a, b, c, d = d, a, b, c
        h = [(v + n) & 0xFFFFFFFF for v, n in zip(h, (a, b, c, d), strict=True)]
    return struct.pack("<4I", *h)


def sstpd_nt_hash(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("sstpd_nt_hash: the password must be a non-empty string")
    return _md4(password.encode("utf-16-le")).hex()


def sstpd_toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnsibleFilterError(f"sstpd_toml: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sstpd_toml(v) for v in value) + "]"
    raise AnsibleFilterError(f"sstpd_toml: cannot write {type(value).__name__} {value!r}")


def sstpd_overlaps(pool: object, networks: object) -> list[str]:
    try:
        net = ipaddress.IPv4Network(str(pool), strict=False)
    except ValueError as e:
        raise AnsibleFilterError(f"sstpd_overlaps: {pool!r} is not an IPv4 network: {e}") from e
    found = []
    for other in networks or []:
        try:
            candidate = ipaddress.IPv4Interface(str(other)).network
        except ValueError:
            continue
        if candidate.overlaps(net):
            found.append(str(other))
    return found


def sstpd_ipv4_problem(value: object, kind: str = "address") -> str:
    """ "" when ``value`` is an IPv4 address (kind="address") or network ("network"),
    otherwise the reason it is not."""
    try:
        if kind == "network":
            ipaddress.IPv4Network(str(value), strict=True)
        else:
            ipaddress.IPv4Address(str(value))
    except ValueError as e:
        return f"{value!r} is not an IPv4 {kind}: {e}"
    return ""


def sstpd_is_ip(value: object) -> bool:
    """True when ``value`` is an IPv4 or IPv6 address (RADIUS servers are named by address)."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "sstpd_nt_hash": sstpd_nt_hash,
            "sstpd_toml": sstpd_toml,
            "sstpd_overlaps": sstpd_overlaps,
            "sstpd_ipv4_problem": sstpd_ipv4_problem,
            "sstpd_is_ip": sstpd_is_ip,
        }
