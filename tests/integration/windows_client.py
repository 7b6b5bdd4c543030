"""A scripted client that puts on the wire what the Windows 10/11 built-in SSTP client
sends, from TCP connect to a packet through the open tunnel.

The scripts are data: each profile is a list of steps to read next to [MS-SSTP] and
docs/protocol/. Bytes Windows sends on its own are written out in hex
(the HTTP request, Call Connect Request, its LCP/IPCP/CCP/IPV6CP Configure-Requests, the
LCP Identification packets, EAP and MS-CHAPv2 Responses); what depends on the server
(Identifiers, challenges, the nonce) is filled in by the small interpreter below, which
also plays the generic RFC 1661 part of Windows: it Acks the server's Configure-Requests
when it can live with the Authentication-Protocol asked for and Naks it toward the
profile's method otherwise, drops options the server Rejects and takes values it Naks.

    python3 -m tests.integration.windows_client settings-eap --host H --ca-file F
prints one JSON object: what happened at each step, the address, the ping result.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import select
import socket
import ssl
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from sstpd.proto import mschap
from tests.integration.client_tool import icmp_echo, is_echo_reply

LCP, IPCP, CCP, IPV6CP, EAP, CHAP, IPV4 = 0xC021, 0x8021, 0x80FD, 0x8057, 0xC227, 0xC223, 0x0021
IPV6 = 0x0057

# [MS-SSTP] §3.2.4.1 / docs/protocol/sstp.md §2: the request line and the three headers; no body.
HTTP_REQUEST = (
    "SSTP_DUPLEX_POST /sra_{{BA195980-CD49-458b-9E23-C84EE0ADCD75}}/ HTTP/1.1\r\n"
    "Host: {host}\r\n"
    "Content-Length: 18446744073709551615\r\n"
    "SSTPCORRELATIONID: {{{correlation}}}\r\n"
    "\r\n"
)
# docs/protocol/sstp.md §3.4 (the [MS-SSTP] §4.7 example): version 1.0, C=1, length 14, message
# 0x0001, one attribute: Encapsulated Protocol ID = PPP.
CALL_CONNECT_REQUEST = "10 01 00 0E  00 01  00 01  00 01 00 06  00 01"
# docs/protocol/ppp.md §2 (sorz/sstp-server issue #5 log): MRU 4091, magic, PFC, ACFC, Callback
# (CBCP), MRRU 1614, Endpoint Discriminator (class 1, 20 bytes).
WINDOWS_LCP = (
    "01 04 0F FB  05 06 5A 1B 3C 4D  07 02  08 02  0D 03 06  11 04 06 4E"
    "  13 17 01 A1 B2 C3 D4 E5 F6 07 18 29 3A 4B 5C 6D 7E 8F 90 11 22 33 44"
)
# docs/protocol/ppp.md §2: right after LCP opens, "MSRASV5.20", "MSRAS-0-<HOSTNAME>" and one
# binary blob, each after Windows' magic number (RFC 1570 §2.1).
IDENTIFICATIONS = [
    "5A 1B 3C 4D" + b"MSRASV5.20".hex(),
    "5A 1B 3C 4D" + b"MSRAS-0-DESKTOP-SSTPD1".hex(),
    "5A 1B 3C 4D  00 00 00 01 00 00 00 06 00 00 00 00",
]
# IP-Address 0.0.0.0, primary DNS, primary NBNS, secondary DNS, secondary NBNS (RFC 1877)
WINDOWS_IPCP = "03 06 00000000  81 06 00000000  82 06 00000000  83 06 00000000  84 06 00000000"
# CCP: MPPE/MPPC (RFC 3078 option 18); IPV6CP: Interface-Identifier (RFC 5072 option 1)
WINDOWS_CCP = "12 06 01 00 00 60"
WINDOWS_IPV6CP = "01 0A 1C 2D 3E 4F 50 61 72 83"

EAP_ONLY = ("C227",)  # LCP Authentication-Protocol data the profile accepts
MSCHAPV2_ONLY = ("C22381",)

Step = tuple[str, ...]


def _connect_steps(user: str, password: str, auth: str) -> list[Step]:
    return [
        ("tls_without_sni",),
        ("http", HTTP_REQUEST),
        ("expect_http_200",),
        ("sstp_control", CALL_CONNECT_REQUEST),
        ("expect_call_connect_ack",),
        ("lcp_negotiate", WINDOWS_LCP),
        *[("lcp_send", "0C", data) for data in IDENTIFICATIONS],
        (auth, user, password),
    ]


def _tunnel_steps() -> list[Step]:
    return [
        ("call_connected", "SHA256"),
        ("ipcp_negotiate", WINDOWS_IPCP),
        ("expect_protocol_reject", "80FD", WINDOWS_CCP),
        ("expect_protocol_reject", "8057", WINDOWS_IPV6CP),
        ("ping", "FF 03 00 21"),
        ("ping", "21"),  # PFC + ACFC were acknowledged: the compressed header works too
        ("disconnect",),
    ]


def _dual_stack_steps() -> list[Step]:
    """Windows against a server with IPv6: IPV6CP with its random identifier, the RA,
    then IPv6 and IPv4 both through the tunnel."""
    return [
        ("call_connected", "SHA256"),
        ("ipcp_negotiate", WINDOWS_IPCP),
        ("expect_protocol_reject", "80FD", WINDOWS_CCP),
        ("ipv6cp_negotiate", WINDOWS_IPV6CP),
        ("expect_ra",),
        ("ping6",),
        ("ping", "FF 03 00 21"),
        ("disconnect",),
    ]


@dataclass
class Profile:
    description: str
    accepts: tuple[str, ...]
    steps: list[Step]


PROFILES: dict[str, Profile] = {
    "settings-eap": Profile(
        "Settings app > VPN > Add, 'User name and password': EAP-MSCHAPv2 only",
        EAP_ONLY,
        [*_connect_steps("CORP\\alice", "alice-secret", "eap_mschapv2"), *_tunnel_steps()],
    ),
    "powershell-default": Profile(
        "Add-VpnConnection without -AuthenticationMethod: MS-CHAPv2 only",
        MSCHAPV2_ONLY,
        [*_connect_steps("CORP\\alice", "alice-secret", "mschapv2"), *_tunnel_steps()],
    ),
    "powershell-eap": Profile(
        "Add-VpnConnection -AuthenticationMethod Eap: EAP-MSCHAPv2",
        EAP_ONLY,
        [*_connect_steps("bob", "bob-secret", "eap_mschapv2"), *_tunnel_steps()],
    ),
    "settings-eap-ipv6": Profile(
        "Settings app profile against a dual-stack server: IPV6CP, RA, IPv6 and IPv4",
        EAP_ONLY,
        [*_connect_steps("CORP\\alice", "alice-secret", "eap_mschapv2"), *_dual_stack_steps()],
    ),
    "chap-md5-only": Profile(
        "a client that can do nothing sstpd offers (CHAP-MD5): clean LCP Terminate",
        ("C22305",),
        [*_connect_steps("alice", "alice-secret", "mschapv2")[:6]],
    ),
    "hostile-floods": Profile(
        "not Windows: 200 Identification packets, then EAP garbage until the server gives up",
        EAP_ONLY,
        [
            *_connect_steps("alice", "alice-secret", "mschapv2")[:6],
            *[("lcp_send", "0C", IDENTIFICATIONS[0])] * 200,
            ("eap_garbage", "40"),
        ],
    ),
    "settings-eap-wrong-password": Profile(
        "Settings-app profile, wrong password (E=691, R=0 with auth.retries = 0)",
        EAP_ONLY,
        [*_connect_steps("CORP\\alice", "not-the-password", "eap_mschapv2_fails")],
    ),
}


# --------------------------------------------------------------------------- interpreter


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _options(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 2 <= len(data) and data[off + 1] >= 2:
        out.append((data[off], data[off + 2 : off + data[off + 1]]))
        off += data[off + 1]
    return out


def _encode_options(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([t, 2 + len(v)]) + v for t, v in options)


class ScriptError(Exception):
    pass


@dataclass
class Windows:
    host: str
    port: int
    ca_file: str
    profile: Profile
    sock: ssl.SSLSocket | None = None
    buf: bytes = b""
    queues: dict[int, list[bytes]] = field(default_factory=dict)
    control: list[bytes] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    ident: int = 0
    nonce: bytes = b""
    hlak: bytes = b""
    cert_der: bytes = b""
    lcp_open: bool = False
    acked_server_lcp: bool = False
    local: IPv4Address | None = None
    peer: IPv4Address | None = None
    iid: bytes = b""
    address6: IPv6Address | None = None
    result: dict[str, object] = field(default_factory=dict)

    # -- transport
    def _send_sstp(self, payload: bytes, control: bool) -> None:
        assert self.sock is not None
        self.sock.sendall(struct.pack("!BBH", 0x10, int(control), 4 + len(payload)) + payload)

    def send_ppp(self, protocol: int, code: int, ident: int, data: bytes) -> None:
        packet = struct.pack("!BBH", code, ident, 4 + len(data)) + data
        self._send_sstp(b"\xff\x03" + struct.pack("!H", protocol) + packet, False)

    def _next_id(self) -> int:
        self.ident = (self.ident + 1) & 0xFF
        return self.ident

    def _read(self, timeout: float) -> bool:
        assert self.sock is not None
        if not self.sock.pending():
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return False
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ScriptError("server closed the connection")
        self.buf += chunk
        while len(self.buf) >= 4:
            length = struct.unpack_from("!H", self.buf, 2)[0] & 0x0FFF
            if len(self.buf) < length:
                break
            packet, self.buf = self.buf[:length], self.buf[length:]
            if packet[1] & 1 and packet[4:6] == b"\x00\x06":  # Call Disconnect: Ack it
                self.sock.sendall(_hex("10 01 00 08  00 07  00 00"))
                self.result["call_disconnect"] = True
            elif packet[1] & 1:
                self.control.append(packet[4:])
            else:
                self._frame(packet[4:])
        return True

    def _frame(self, frame: bytes) -> None:
        if frame[:2] == b"\xff\x03":
            frame = frame[2:]
        protocol, payload = struct.unpack_from("!H", frame)[0], frame[2:]
        if protocol == LCP and payload[0] == 7:  # Code-Reject: Windows would log an error
            self.result["code_rejects"] = int(self.result.get("code_rejects", 0)) + 1  # type: ignore[call-overload]
        if protocol == LCP and payload[0] == 1:
            self._answer_lcp_request(payload)
        elif protocol == LCP and payload[0] == 5:  # Terminate-Request: Ack, as any PPP peer
            self.send_ppp(LCP, 6, payload[1], b"")
            self.queues.setdefault(protocol, []).append(payload)
        elif protocol == LCP and payload[0] == 9:  # Echo-Request
            self.send_ppp(LCP, 10, payload[1], b"\x5a\x1b\x3c\x4d" + payload[8:])
        elif protocol == IPCP and payload[0] == 1:
            self.send_ppp(IPCP, 2, payload[1], payload[4:])  # Windows takes the server's address
        elif protocol == IPV6CP and payload[0] == 1:
            self.send_ppp(IPV6CP, 2, payload[1], payload[4:])  # and the server's identifier
            self.result["server_iid"] = payload[6:14].hex() if len(payload) >= 14 else ""
        else:
            self.queues.setdefault(protocol, []).append(payload)

    def _answer_lcp_request(self, payload: bytes) -> None:
        """Ack, or Nak an auth protocol the profile lacks (docs/protocol/eap-mschapv2.md §1)."""
        options = _options(payload[4:])
        auth = [v for t, v in options if t == 3]
        if auth and auth[0].hex().upper() not in self.profile.accepts:
            value = _hex(self.profile.accepts[0])
            nak = bytes([3, 2 + len(value)]) + value
            self.log.append(f"LCP Nak of the server's auth {auth[0].hex()} toward {nak[2:].hex()}")
            self.send_ppp(LCP, 3, payload[1], nak)
            return
        self.log.append(f"LCP Ack of the server's request (auth {auth[0].hex() if auth else '-'})")
        self.send_ppp(LCP, 2, payload[1], payload[4:])
        self.acked_server_lcp = True

    def expect(self, protocol: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.queues.get(protocol):
            got = self._read(max(0.0, deadline - time.monotonic()))
            if not got and time.monotonic() >= deadline:
                raise ScriptError(f"nothing of protocol {protocol:04x} within {timeout}s")
        return self.queues[protocol].pop(0)

    def expect_control(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.control:
            if not self._read(max(0.0, deadline - time.monotonic())) and (
                time.monotonic() >= deadline
            ):
                raise ScriptError("no SSTP control message")
        return self.control.pop(0)

    # -- steps
    def do_tls_without_sni(self) -> None:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = False  # checked below, by hand, as Windows checks the name
        raw = socket.create_connection((self.host, self.port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=None)  # no SNI (docs/protocol/sstp.md §7)
        self.cert_der = self.sock.getpeercert(binary_form=True) or b""
        names = [v for k, v in self.sock.getpeercert().get("subjectAltName", ()) if k != "DNS"]
        if self.host not in names:
            raise ScriptError(f"certificate names {names}, not {self.host}")

    def do_http(self, template: str) -> None:
        text = template.format(host=self.host, correlation=str(uuid.uuid4()).upper())
        assert self.sock is not None
        self.sock.sendall(text.encode("ascii"))

    def do_expect_http_200(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            assert self.sock is not None
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n")[0].decode()
        self.result["http"] = status
        if not status.startswith("HTTP/1.1 200"):
            raise ScriptError(status)

    def do_sstp_control(self, hexdata: str) -> None:
        assert self.sock is not None
        self.sock.sendall(_hex(hexdata))

    def do_expect_call_connect_ack(self) -> None:
        msg = self.expect_control()
        if msg[:2] != b"\x00\x02" or len(msg) != 44:
            raise ScriptError(f"not a Call Connect Ack: {msg.hex()}")
        self.result["hash_bitmask"] = msg[11]
        self.nonce = msg[12:44]

    def do_lcp_negotiate(self, hexoptions: str) -> None:
        options = _options(_hex(hexoptions))
        ident = self._next_id()
        self.send_ppp(LCP, 1, ident, _encode_options(options))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reply = self.expect(LCP)
            code, rid = reply[0], reply[1]
            if rid != ident or code not in (2, 3, 4):
                continue
            if code == 2:
                break
            changed = dict(_options(reply[4:]))
            if code == 4:
                self.log.append(f"LCP options rejected by the server: {sorted(changed)}")
                options = [(t, v) for t, v in options if t not in changed]
            else:
                options = [(t, changed.get(t, v)) for t, v in options]
            ident = self._next_id()
            self.send_ppp(LCP, 1, ident, _encode_options(options))
        while not self.acked_server_lcp:
            self._read(10)
        self.lcp_open = True
        self.result["lcp"] = "opened"

    def do_lcp_send(self, code: str, hexdata: str) -> None:
        self.send_ppp(LCP, int(code, 16), self._next_id(), _hex(hexdata))

    def _mschapv2_response(self, challenge: bytes, user: str, password: str) -> tuple[bytes, str]:
        peer_challenge = os.urandom(16)
        nt_hash = mschap.nt_password_hash(password)
        nt = mschap.generate_nt_response(challenge, peer_challenge, user, nt_hash)
        expected = mschap.authenticator_response(nt_hash, nt, peer_challenge, challenge, user)
        self.hlak = mschap.hlak(nt_hash, nt)
        return bytes([49]) + peer_challenge + bytes(8) + nt + b"\x00" + user.encode(), expected

    def _eap_exchange(self, user: str, password: str) -> bytes:
        """Identity, Challenge, Response; returns the server's Success/Failure Request."""
        req = self.expect(EAP)
        if req[0] != 1 or req[4] != 1:
            raise ScriptError(f"expected EAP Request/Identity, got {req.hex()}")
        ident = user.encode()
        self.send_ppp(EAP, 2, req[1], b"\x01" + ident)
        req = self.expect(EAP)
        if req[0] != 1 or req[4] != 26 or req[5] != 1:
            raise ScriptError(f"expected EAP-MS-CHAP-V2 Challenge, got {req.hex()}")
        ms_id, challenge = req[6], req[10:26]
        value, self._expected = self._mschapv2_response(challenge, user, password)
        body = struct.pack("!BBH", 2, ms_id, 4 + len(value)) + value
        self.send_ppp(EAP, 2, req[1], b"\x1a" + body)
        self._ms_id = ms_id
        return self.expect(EAP)

    def do_eap_mschapv2(self, user: str, password: str) -> None:
        req = self._eap_exchange(user, password)
        if req[0] != 1 or req[4:6] != b"\x1a\x03":
            raise ScriptError(f"expected EAP-MS-CHAP-V2 Success-Request, got {req.hex()}")
        if req[6] != self._ms_id:  # Windows: the MS-CHAPv2-ID must be echoed
            raise ScriptError(f"Success-Request MS-CHAPv2-ID {req[6]} != {self._ms_id}")
        if req[9:51].decode() != self._expected:
            raise ScriptError("server's authenticator response is wrong")
        self.send_ppp(EAP, 2, req[1], b"\x1a\x03")  # Success-Response: the OpCode alone
        done = self.expect(EAP)
        if done[:1] != b"\x03" or done[1] != req[1]:
            raise ScriptError(f"expected EAP-Success, got {done.hex()}")
        self.result["auth"] = "eap-mschapv2"

    def do_eap_mschapv2_fails(self, user: str, password: str) -> None:
        req = self._eap_exchange(user, password)
        if req[0] != 1 or req[4:6] != b"\x1a\x04" or req[6] != self._ms_id:
            raise ScriptError(f"expected EAP-MS-CHAP-V2 Failure-Request, got {req.hex()}")
        self.result["failure"] = req[9:].decode()
        self.send_ppp(EAP, 2, req[1], b"\x1a\x04")  # Failure-Response
        done = self.expect(EAP)
        self.result["eap_failure"] = done == bytes([4, req[1], 0, 4])
        term = self.expect(LCP)  # (already acknowledged by _frame)
        self.result["lcp_terminate"] = term[0] == 5 and term[4:].decode(errors="replace")

    def do_eap_garbage(self, count: str) -> None:
        """Responses with wrong Identifiers, unknown Codes, bad lengths, then see the end."""
        self.expect(EAP)  # the Identity Request
        junk = ["02 77 00 05 01", "09 01 00 04", "02 01 00 09 1A 02 02 00 3A", "03 01 00 04"]
        try:
            for i in range(int(count)):
                self._send_sstp(b"\xff\x03\xc2\x27" + _hex(junk[i % len(junk)]), False)
            failure = self.expect(EAP)
            self.result["eap_after_garbage"] = failure.hex()
            term = self.expect(LCP)
            self.result["lcp_terminate"] = term[0] == 5 and term[4:].decode(errors="replace")
        except (ScriptError, OSError) as exc:
            self.result["eap_after_garbage"] = str(exc)

    def do_mschapv2(self, user: str, password: str) -> None:
        req = self.expect(CHAP)
        if req[0] != 1 or req[4] != 16:
            raise ScriptError(f"expected MS-CHAPv2 Challenge, got {req.hex()}")
        value, expected = self._mschapv2_response(req[5:21], user, password)
        self.send_ppp(CHAP, 2, req[1], value)
        success = self.expect(CHAP)
        if success[0] != 3 or success[4:46].decode() != expected:
            raise ScriptError(f"expected MS-CHAPv2 Success, got {success.hex()}")
        self.result["auth"] = "mschapv2"

    def do_call_connected(self, hash_name: str) -> None:
        """[MS-SSTP] §2.2.7 / docs/protocol/sstp.md §6: SHA-256 binding computed here, apart."""
        cert_hash = hashlib.sha256(self.cert_der).digest()
        cmk = hmac.new(self.hlak, b"SSTP inner method derived CMK" + b"\x20\x00\x01", "sha256")
        head = _hex("10 01 00 70  00 04  00 01  00 03 00 68  00 00 00 02")
        zeroed = head + self.nonce + cert_hash + bytes(32)
        mac = hmac.new(cmk.digest(), zeroed, "sha256").digest()
        assert self.sock is not None
        self.sock.sendall(head + self.nonce + cert_hash + mac)
        self.result["binding"] = hash_name

    def do_ipcp_negotiate(self, hexoptions: str) -> None:
        options = _options(_hex(hexoptions))
        for _ in range(6):
            ident = self._next_id()
            self.send_ppp(IPCP, 1, ident, _encode_options(options))
            reply = self.expect(IPCP)
            while reply[1] != ident or reply[0] not in (2, 3, 4):
                reply = self.expect(IPCP)
            if reply[0] == 2:
                break
            changed = dict(_options(reply[4:]))
            if reply[0] == 4:
                self.log.append(f"IPCP options rejected by the server: {sorted(changed)}")
                options = [(t, v) for t, v in options if t not in changed]
            else:
                options = [(t, changed.get(t, v)) for t, v in options]
        got = dict(options)
        self.local = IPv4Address(got[3])
        self.result["local"] = str(self.local)
        self.result["dns"] = [str(IPv4Address(got[t])) for t in (0x81, 0x83) if t in got]
        self.result["ipcp_options"] = sorted(got)

    def do_expect_protocol_reject(self, protocol: str, hexoptions: str) -> None:
        proto = int(protocol, 16)
        ident = self._next_id()
        self.send_ppp(proto, 1, ident, _hex(hexoptions))
        rej = self.expect(LCP)
        while rej[0] != 8:
            rej = self.expect(LCP)
        if rej[4:6] != struct.pack("!H", proto):
            raise ScriptError(f"Protocol-Reject of {rej[4:6].hex()}, not {protocol}")
        self.result.setdefault("protocol_rejects", []).append(protocol)  # type: ignore[union-attr]

    def do_ipv6cp_negotiate(self, hexoptions: str) -> None:
        options = _options(_hex(hexoptions))
        for _ in range(6):
            ident = self._next_id()
            self.send_ppp(IPV6CP, 1, ident, _encode_options(options))
            reply = self.expect(IPV6CP)
            while reply[1] != ident or reply[0] not in (2, 3, 4):
                reply = self.expect(IPV6CP)
            if reply[0] == 2:
                break
            changed = dict(_options(reply[4:]))
            options = [
                (t, changed.get(t, v)) for t, v in options if reply[0] == 3 or t not in changed
            ]
        self.iid = dict(options)[1]
        self.result["iid"] = self.iid.hex()

    def do_expect_ra(self) -> None:
        from sstpd.proto.ipv6 import nd

        for _ in range(20):
            pkt = self.expect(IPV6)
            if len(pkt) > 40 and pkt[40] == nd.TYPE_RA:
                header, _, message = nd.unwrap(pkt)
                ra = nd.decode_ra(header, message)
                prefix = ra.prefixes[0].prefix
                self.address6 = IPv6Address(prefix.network_address.packed[:8] + self.iid)
                self.result["prefix"] = str(prefix)
                self.result["ra_from"] = str(header.src)
                self.result["ra_mtu"] = ra.mtu
                self.result["ra_dns"] = [str(a) for a in ra.dns]
                return
        raise ScriptError("no Router Advertisement")

    def do_ping6(self) -> None:
        from tests.integration.ipv6_tool import echo6, is_echo6_reply

        peer6 = IPv6Address(str(self.result.get("peer6", "2001:db8:77::1")))
        self._send_sstp(b"\xff\x03\x00\x57" + echo6(self.address6, peer6, 0x5157, 0), False)
        reply = self.expect(IPV6)
        while not is_echo6_reply(reply, peer6, 0x5157, 0):
            reply = self.expect(IPV6)
        self.result["ping6"] = True

    def do_ping(self, ppp_header: str) -> None:
        assert self.local is not None
        peer = IPv4Address(self.result.get("peer", "10.77.0.1"))
        seq = len(self.result.get("pings", []))  # type: ignore[arg-type]
        packet = icmp_echo(self.local, peer, 0x5157, seq, b"windows-shaped" * 4)
        self._send_sstp(_hex(ppp_header) + packet, False)
        reply = self.expect(IPV4)
        while not is_echo_reply(reply, 0x5157, seq):
            reply = self.expect(IPV4)
        self.result.setdefault("pings", []).append(ppp_header)  # type: ignore[union-attr]

    def do_disconnect(self) -> None:
        self.send_ppp(LCP, 5, self._next_id(), b"User request")  # Windows: LCP Terminate first
        ack = self.expect(LCP)
        while ack[0] != 6:
            ack = self.expect(LCP)
        # Call Disconnect with a Status Info (Windows always sends one, [MS-SSTP] note <4>)
        self.do_sstp_control("10 01 00 14  00 06  00 01  00 02 00 0C  00 00 00 00  00 00 00 00")
        self.result["disconnected"] = True

    def run(self) -> dict[str, object]:
        self.result["profile"] = self.profile.description
        for step in self.profile.steps:
            getattr(self, "do_" + step[0])(*step[1:])
            self.log.append(step[0])
        self.result["log"] = self.log
        return self.result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("profile", choices=sorted(PROFILES))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--peer", default="10.77.0.1", help="the server's tunnel address")
    p.add_argument("--peer6", default="2001:db8:77::1", help="the server's IPv6 address")
    a = p.parse_args()
    client = Windows(a.host, a.port, a.ca_file, PROFILES[a.profile])
    client.result["peer"] = a.peer
    client.result["peer6"] = a.peer6
    try:
        res = client.run()
    except (ScriptError, OSError) as exc:
        res = {**client.result, "error": f"{type(exc).__name__}: {exc}", "log": client.log}
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
