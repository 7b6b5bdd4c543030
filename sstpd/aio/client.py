"""An SSTP client on the sans-I/O core of the server: SSTP + PPP (EAP/MS-CHAPv2/PAP) + TUN.

Library use::

    tunnel = await Tunnel.open(ClientOptions(host="vpn.example.org", user="alice",
                                             password="secret", ca_file="ca.pem", tun="sstpc0"))
    print(tunnel.local_address, tunnel.peer_address, tunnel.dns)
    await tunnel.close()

Without ``tun`` the tunnel carries packets for the caller (``send_ip`` / ``recv_ip``), which
is how tests open dozens of sessions from one process. Command line: ``sstpd connect``.

``accept_routes``: after IPCP a DHCPINFORM goes into the tunnel (as Windows sends it) and
the split-tunnel routes of the server's DHCPACK are installed on the TUN; its domain and
DNS servers are reported. ``ipv6``: IPV6CP is negotiated next to IPCP, and the address the
server's Router Advertisement gives (``prefix::<IID>/64``, plus ``fe80::<IID>``) is put
on the TUN, where IPv6 packets then flow both ways.

This module is the command line (``sstpd connect``: ``main``) and the library's front
door: ``ClientOptions``, ``ConnectError`` and ``ClientProtocol`` live in
``sstpd.aio.client_protocol``, ``Tunnel`` in ``sstpd.aio.client_tunnel``, and are
importable from here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from ipaddress import IPv4Network, IPv6Network, ip_network

from sstpd.aio.client_protocol import ClientOptions, ClientProtocol, ConnectError
from sstpd.aio.client_tunnel import Tunnel
from sstpd.proto.sstp.constants import HashProtocol

__all__ = ["ClientOptions", "ClientProtocol", "ConnectError", "Tunnel", "main"]


def _parse_args(argv: list[str]) -> ClientOptions:
    p = argparse.ArgumentParser(prog="sstpd connect", description="Connect to an SSTP server.")
    p.add_argument("server", help="HOST or HOST:PORT")
    p.add_argument("--user", required=True)
    p.add_argument("--password", help="(visible in ps; prefer --password-file or $SSTPD_PASSWORD)")
    p.add_argument("--password-file")
    p.add_argument(
        "--auth",
        default="eap-mschapv2,mschapv2,pap",
        help="methods the server may ask for, comma-separated: eap-mschapv2,mschapv2,pap",
    )
    p.add_argument("--ca-file", help="CA certificate to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--server-name", help="TLS server name / HTTP Host (default: HOST)")
    p.add_argument("--plain", action="store_true", help="plain HTTP (no TLS); needs --cert-hash")
    p.add_argument("--cert-hash", help="SHA-256 certificate hash for crypto binding (hex)")
    p.add_argument("--tun", default="sstpc0", help="TUN device name (default sstpc0)")
    p.add_argument(
        "--route", action="append", default=[], help="route NET (IPv4 or IPv6) into the tunnel"
    )
    p.add_argument(
        "--accept-routes",
        action="store_true",
        help="ask the server for its split-tunnel routes (DHCPINFORM) and install them",
    )
    p.add_argument(
        "--ipv6", action="store_true", help="negotiate IPv6 and configure the advertised address"
    )
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument(
        "--record-per-packet",
        action="store_true",
        help="send one TLS record per IP packet (as openconnect does) instead of one per batch",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    host, _, port = a.server.rpartition(":") if ":" in a.server else (a.server, "", "443")
    password = a.password
    if a.password_file:
        with open(a.password_file) as f:
            password = f.readline().rstrip("\n")
    if password is None:
        password = os.environ.get("SSTPD_PASSWORD")
    if password is None:
        p.error("no password: use --password-file, $SSTPD_PASSWORD or --password")
    try:
        nets = [ip_network(r) for r in a.route]
    except ValueError as exc:
        p.error(f"--route: {exc}")
    override = None
    if a.cert_hash:
        override = {HashProtocol.SHA256: bytes.fromhex(a.cert_hash.replace(":", ""))}
    elif a.plain:
        p.error("--plain needs --cert-hash")
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    return ClientOptions(
        host=host,
        port=int(port),
        user=a.user,
        password=password,
        auth_methods=tuple(x.strip() for x in a.auth.split(",") if x.strip()),
        tls=not a.plain,
        ca_file=a.ca_file,
        insecure=a.insecure,
        server_name=a.server_name,
        tun=a.tun,
        routes=[n for n in nets if isinstance(n, IPv4Network)],
        routes6=[n for n in nets if isinstance(n, IPv6Network)],
        accept_routes=a.accept_routes,
        ipv6=a.ipv6,
        timeout=a.timeout,
        cert_hashes_override=override,
        record_per_packet=a.record_per_packet,
    )


async def _run(opts: ClientOptions) -> int:
    try:
        tunnel = await Tunnel.open(opts)
    except ConnectError as exc:
        print(f"sstpd connect: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        print(f"sstpd connect: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    info = {
        "local": str(tunnel.local_address),
        "peer": str(tunnel.peer_address),
        "dns": [str(d) for d in tunnel.dns],
        "tun": opts.tun,
        "hash": tunnel.hash_protocol.name if tunnel.hash_protocol else None,
    }
    if opts.accept_routes:
        pushed = tunnel.pushed
        info["routes"] = [str(n) for n in tunnel.installed_routes]
        info["domain"] = pushed.domain if pushed else None
        info["dhcp_dns"] = [str(d) for d in pushed.dns] if pushed else []
    if opts.ipv6:
        v6 = tunnel.ipv6
        info["ipv6"] = f"{v6.address}/64" if v6 else None
        info["ipv6_dns"] = [str(d) for d in v6.dns] if v6 else []
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    closed = asyncio.ensure_future(tunnel.wait_closed())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({closed, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        print(f"sstpd connect: closed by server: {closed.result()}", file=sys.stderr)
        stopper.cancel()
        return 1
    closed.cancel()
    await tunnel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = _parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_run(opts))


if __name__ == "__main__":
    raise SystemExit(main())
