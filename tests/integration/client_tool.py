"""Scenarios run with the package's client inside the client network namespace.

Each scenario prints one JSON object on stdout; the tests in this directory start it with
``ip netns exec`` and assert on the result. Packets are built here by hand (IPv4 + ICMP or
UDP with correct checksums) and carried by ``sstpd.aio.client.Tunnel`` without a TUN device,
so one process can hold many sessions.

    python3 -m tests.integration.client_tool ping --host H --ca-file F --user U --password P
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from ipaddress import IPv4Address

from sstpd.aio.client import ClientOptions, ConnectError, Tunnel
from sstpd.proto.sstp.constants import HashProtocol


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes, ident: int = 1) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0, src.packed, dst.packed
    )
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def icmp_echo(src: IPv4Address, dst: IPv4Address, ident: int, seq: int, data: bytes) -> bytes:
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
    return ipv4(src, dst, 1, msg, ident)


def udp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, data: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, len(seg))
    seg = seg[:6] + struct.pack("!H", checksum(pseudo + seg) or 0xFFFF) + seg[8:]
    return ipv4(src, dst, 17, seg)


def is_echo_reply(pkt: bytes, ident: int, seq: int) -> bool:
    ihl = (pkt[0] & 0x0F) * 4
    return (
        len(pkt) >= ihl + 8
        and pkt[9] == 1
        and pkt[ihl] == 0
        and struct.unpack("!HH", pkt[ihl + 4 : ihl + 8]) == (ident, seq)
    )


def options(a: argparse.Namespace, **kw: object) -> ClientOptions:
    opts = ClientOptions(
        host=a.host,
        port=a.port,
        user=a.user,
        password=a.password,
        ca_file=a.ca_file,
        auth_methods=tuple(a.auth.split(",")),
        timeout=a.timeout,
        server_name=a.server_name,
    )
    for k, v in kw.items():
        setattr(opts, k, v)
    return opts


async def ping_once(t: Tunnel, ident: int, count: int = 3, timeout: float = 3.0) -> int:
    """Send ``count`` echo requests to the server's tunnel address; return replies seen."""
    got = 0
    for seq in range(count):
        t.send_ip(icmp_echo(t.local_address, t.peer_address, ident, seq, b"sstpd-test" * 5))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pkt = await t.recv_ip(deadline - time.monotonic())
            except TimeoutError:
                break
            if is_echo_reply(pkt, ident, seq):
                got += 1
                break
    return got


async def scenario_ping(a: argparse.Namespace) -> dict[str, object]:
    t = await Tunnel.open(options(a))
    got = await ping_once(t, 7, a.count)
    res = {
        "local": str(t.local_address),
        "peer": str(t.peer_address),
        "dns": [str(d) for d in t.dns],
        "hash": t.hash_protocol.name if t.hash_protocol else None,
        "replies": got,
    }
    await t.close()
    res["closed"] = t.proto.closed.result() if t.proto.closed.done() else None
    return res


async def scenario_connect(a: argparse.Namespace) -> dict[str, object]:
    """Connect, report success or the failure (MS-CHAPv2 code)."""
    try:
        t = await Tunnel.open(options(a))
    except ConnectError as exc:
        return {"ok": False, "error": str(exc), "code": exc.code}
    await t.close()
    return {"ok": True, "local": str(t.local_address)}


async def scenario_bad_binding(a: argparse.Namespace) -> dict[str, object]:
    """Present a wrong certificate hash or a wrong compound MAC; try to get traffic through."""
    kw: dict[str, object] = {}
    if a.what == "cert-hash":
        kw["cert_hashes_override"] = {
            HashProtocol.SHA256: b"\x42" * 32,
            HashProtocol.SHA1: b"\x42" * 20,
        }
    elif a.what == "mac":
        kw["hlak_override"] = b"\x13" * 32
    # "none": an honest client; the server's configured hash is what is wrong
    opened = True
    replies = 0
    error = None
    try:
        t = await Tunnel.open(options(a, **kw))
    except ConnectError as exc:
        opened, error = False, str(exc)
    else:
        # the client believes it is connected; the server must not pass anything
        replies = await ping_once(t, 9, 2, 1.5)
        try:
            reason = await asyncio.wait_for(t.wait_closed(), 5)
        except TimeoutError:
            reason = None
        error = reason
        await t.close()
    return {"opened": opened, "replies": replies, "closed": error}


async def scenario_spoof(a: argparse.Namespace) -> dict[str, object]:
    """Send UDP to the server's tunnel address from the assigned and from a forged source."""
    t = await Tunnel.open(options(a))
    forged = IPv4Address(a.forged)
    for i in range(3):
        t.send_ip(udp(t.local_address, t.peer_address, 40000, a.udp_port, f"legit-{i}".encode()))
        t.send_ip(udp(forged, t.peer_address, 40000, a.udp_port, f"forged-{i}".encode()))
    await asyncio.sleep(0.5)
    got = await ping_once(t, 11, 1)
    await t.close()
    return {"local": str(t.local_address), "replies": got}


async def scenario_many(a: argparse.Namespace) -> dict[str, object]:
    """Open ``--sessions`` tunnels at once, ping through each, close them all."""
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(Tunnel.open(options(a)) for _ in range(a.sessions)), return_exceptions=True
    )
    tunnels = [r for r in results if isinstance(r, Tunnel)]
    errors = [repr(r) for r in results if not isinstance(r, Tunnel)]
    t_open = time.monotonic() - t0
    replies = await asyncio.gather(*(ping_once(t, 100 + i, 1, 10.0) for i, t in enumerate(tunnels)))
    await asyncio.sleep(a.hold)  # lets a benchmark look at the daemon with them all open
    await asyncio.gather(*(t.close() for t in tunnels))
    return {
        "opened": len(tunnels),
        "errors": errors[:5],
        "open_seconds": round(t_open, 2),
        "addresses": sorted({str(t.local_address) for t in tunnels}),
        "replies": sum(replies),
    }


async def scenario_echo_burst(a: argparse.Namespace) -> dict[str, object]:
    """Open ``--sessions`` tunnels at once (every other one sending one TLS record per
    packet), send ``--count`` echo requests of sizes up to ``--max-size`` through each in
    one batch, and check that every reply carries its request's exact payload. Closes
    them all."""
    results = await asyncio.gather(
        *(Tunnel.open(options(a, record_per_packet=bool(i % 2))) for i in range(a.sessions)),
        return_exceptions=True,
    )
    tunnels = [r for r in results if isinstance(r, Tunnel)]
    errors = [repr(r) for r in results if not isinstance(r, Tunnel)]

    async def burst(i: int, t: Tunnel) -> tuple[int, int]:
        sent: dict[int, bytes] = {}
        packets = []
        for seq in range(a.count):
            size = 28 + (seq * 197 + i * 31) % (a.max_size - 28 + 1)  # IP bytes in all
            data = bytes((i + seq + k) & 0xFF for k in range(size - 28))
            sent[seq] = data
            packets.append(icmp_echo(t.local_address, t.peer_address, i, seq, data))
        t.proto.send_ip_batch(packets)
        good = bad = 0
        deadline = time.monotonic() + 30
        while sent and time.monotonic() < deadline:
            try:
                pkt = await t.recv_ip(deadline - time.monotonic())
            except TimeoutError:
                break
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[9] != 1 or pkt[ihl] != 0:  # not an echo reply
                continue
            ident, seq = struct.unpack("!HH", pkt[ihl + 4 : ihl + 8])
            if ident == i and pkt[ihl + 8 :] == sent.pop(seq, None):
                good += 1
            else:
                bad += 1
        return good, bad

    counts = await asyncio.gather(*(burst(i, t) for i, t in enumerate(tunnels)))
    await asyncio.gather(*(t.close() for t in tunnels))
    return {
        "opened": len(tunnels),
        "errors": errors[:5],
        "sent": len(tunnels) * a.count,
        "good": sum(g for g, _ in counts),
        "bad": sum(b for _, b in counts),
        "tunnels_complete": sum(1 for g, _ in counts if g == a.count),
    }


async def scenario_hold(a: argparse.Namespace) -> dict[str, object]:
    """Connect, print the addresses at once, then wait until the server ends the session."""
    t = await Tunnel.open(options(a))
    print(json.dumps({"local": str(t.local_address), "peer": str(t.peer_address)}), flush=True)
    reason = await t.wait_closed()
    return {"closed": reason}


async def scenario_pool(a: argparse.Namespace) -> dict[str, object]:
    """Interactive: each stdin line "open N" opens N more tunnels (failures listed under
    "errors"), "ping" pings through all of them, "pingeach" too and answers the replies per
    tunnel address, "closeall" closes them; each answers one JSON line. EOF closes
    everything."""
    loop = asyncio.get_running_loop()
    tunnels: list[Tunnel] = []
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = line.split()
        out: dict[str, object]
        if cmd[:1] == ["open"]:
            res = await asyncio.gather(
                *(Tunnel.open(options(a)) for _ in range(int(cmd[1]))), return_exceptions=True
            )
            new = [t for t in res if isinstance(t, Tunnel)]
            tunnels += new
            out = {"opened": [str(t.local_address) for t in new]}
            errors = [repr(e) for e in res if not isinstance(e, Tunnel)]
            if errors:
                out["errors"] = errors
        elif cmd[:1] == ["closeall"]:
            await asyncio.gather(*(t.close() for t in tunnels))
            out = {"closed": len(tunnels)}
            tunnels = []
        else:
            got = await asyncio.gather(
                *(ping_once(t, 200 + i, 1, 5.0) for i, t in enumerate(tunnels))
            )
            out = {"replies": sum(got), "tunnels": len(tunnels)}
            if cmd[:1] == ["pingeach"]:
                out["by_address"] = {
                    str(t.local_address): n for t, n in zip(tunnels, got, strict=True)
                }
        print(json.dumps(out), flush=True)
    await asyncio.gather(*(t.close() for t in tunnels))
    return {"closed": len(tunnels)}


async def scenario_dhcp(a: argparse.Namespace) -> dict[str, object]:
    """Bad DHCP first (a foreign ciaddr, a truncated and an oversized DHCPINFORM), then a
    good one: how many DHCP answers came back, and what the good one said."""
    from sstpd.proto import dhcp

    t = await Tunnel.open(options(a))
    me = t.local_address
    good = dhcp.build_inform(me, 0x5157)
    foreign = dhcp.build_inform(IPv4Address(int(me) ^ 1), 0x5158)
    foreign = dhcp.encode_ipv4_udp(  # from our own address, ciaddr someone else's
        dhcp.IPv4Udp(
            me, IPv4Address("255.255.255.255"), 68, 67, dhcp.decode_ipv4_udp(foreign).payload
        )
    )
    oversized = dhcp.encode_bootp(
        dhcp.BootpMessage(op=1, xid=0x5159, ciaddr=me, options={53: b"\x08"}),
        pad_to=dhcp.MAX_MESSAGE + 100,
    )
    bad = [
        foreign,
        good[:120],  # truncated: the IPv4 total length says more
        dhcp.encode_ipv4_udp(dhcp.IPv4Udp(me, IPv4Address("255.255.255.255"), 68, 67, oversized)),
    ]
    for pkt in bad:
        t.send_ip(pkt)
    await asyncio.sleep(a.hold or 1.0)
    stray = 0
    with contextlib.suppress(TimeoutError):
        while await t.recv_ip(0.1):
            stray += 1
    t.send_ip(good)
    reply = await t.recv_ip(5.0)
    info = dhcp.parse_ack(reply, me, 0x5157)
    await t.close()
    return {
        "sent_bad": len(bad),
        "answers_to_bad": stray,
        "routes": [str(n) for n, _ in info.routes],
        "routers": sorted({str(r) for _, r in info.routes}),
        "domain": info.domain,
        "dns": [str(d) for d in info.dns],
        "server": str(info.server),
    }


SCENARIOS = {
    "dhcp": scenario_dhcp,
    "ping": scenario_ping,
    "connect": scenario_connect,
    "bad-binding": scenario_bad_binding,
    "spoof": scenario_spoof,
    "many": scenario_many,
    "echo-burst": scenario_echo_burst,
    "hold": scenario_hold,
    "pool": scenario_pool,
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-secret")
    p.add_argument("--auth", default="mschapv2,pap")
    p.add_argument("--ca-file")
    p.add_argument("--server-name", help="TLS server name (default: --host)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--what", default="cert-hash")
    p.add_argument("--forged", default="10.77.0.250")
    p.add_argument("--udp-port", type=int, default=5002)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--max-size", type=int, default=1400, help="echo-burst: IP bytes")
    p.add_argument("--hold", type=float, default=0.0, help="many: seconds to keep them open")
    a = p.parse_args()
    res = asyncio.run(SCENARIOS[a.scenario](a))
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
