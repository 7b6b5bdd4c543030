"""SSTP client for the Ansible tests: open a session through the deployed server and
send UDP to the "uplink host" behind it; print what came back as JSON.

    python -m tests.ansible.uplink_client --host 192.0.2.11 --port 443 --ca-file CA \
        --user alice --password SECRET --target 192.0.2.1 --udp-port 5555

The uplink host runs ``uplink_client.py --echo PORT``: it answers every datagram with
the source address and port it saw, so the client learns whether it was masqueraded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
from ipaddress import IPv4Address

from sstpd.aio.client import ClientOptions, Tunnel
from tests.integration.client_tool import udp


def echo(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(json.dumps({"seen": f"{peer[0]}:{peer[1]}", "data": data.decode()}).encode(), peer)


def udp_payload(pkt: bytes, sport: int) -> bytes | None:
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    _, dst_port, length = struct.unpack("!HHH", pkt[ihl : ihl + 6])
    if dst_port != sport:
        return None
    return pkt[ihl + 8 : ihl + length]


async def session(a: argparse.Namespace) -> dict[str, object]:
    opts = ClientOptions(
        host=a.host, port=a.port, user=a.user, password=a.password, ca_file=a.ca_file, timeout=30
    )
    t = await Tunnel.open(opts)
    result: dict[str, object] = {"local": str(t.local_address), "replies": []}
    sport = 40000
    for i in range(3):
        t.send_ip(
            udp(t.local_address, IPv4Address(a.target), sport, a.udp_port, f"hello-{i}".encode())
        )
        try:
            while True:
                payload = udp_payload(await t.recv_ip(3.0), sport)
                if payload is not None:
                    result["replies"].append(json.loads(payload))  # type: ignore[attr-defined]
                    break
        except TimeoutError:
            pass
    await t.close()
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--echo", type=int)
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--ca-file")
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="")
    p.add_argument("--target", default="192.0.2.1")
    p.add_argument("--udp-port", type=int, default=5555)
    a = p.parse_args()
    if a.echo:
        echo(a.echo)
        return 0
    print(json.dumps(asyncio.run(session(a))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
