"""``sstpd cert``: a self-signed certificate, or the fingerprints of one."""

from __future__ import annotations

import argparse
import os
import socket
from ipaddress import ip_address

from sstpd import certs
from sstpd.cli.common import effective_config


def cert(args: argparse.Namespace) -> int:
    if args.show:
        if args.out_dir or args.cert or args.key or args.force:
            raise ValueError("--show takes no other option")
        _print_fingerprints(args.show)
        return 0
    if args.out_dir and (args.cert or args.key):
        raise ValueError("give either --out-dir or --cert and --key")
    if bool(args.cert) != bool(args.key):
        raise ValueError("--cert and --key go together")
    if args.out_dir:
        cert_path = os.path.join(args.out_dir, "server.crt")
        key_path = os.path.join(args.out_dir, "server.key")
    elif args.cert:
        cert_path, key_path = args.cert, args.key
    else:
        config, _ = effective_config(None)
        cert_path, key_path = config.server.certificate, config.server.key
    if not args.force:
        for path in (cert_path, key_path):
            if os.path.exists(path):
                raise ValueError(f"{path} exists (use --force to replace it)")
    cn: str = args.cn or socket.gethostname() or "localhost"
    sans: list[str] = args.san or [cn]
    for san in sans:
        _check_san(san)
    certs.generate_self_signed(
        cert_path, key_path, common_name=cn, sans=sans, days=args.days, key_type=args.key_type
    )
    print(f"certificate: {cert_path}")
    print(f"key: {key_path}")
    _print_fingerprints(cert_path)
    return 0


def _check_san(name: str) -> None:
    try:
        ip_address(name)
    except ValueError:
        if not name or not name.isascii() or any(c.isspace() for c in name):
            raise ValueError(f"--san {name!r}: not an IP address or ASCII DNS name") from None


def _print_fingerprints(path: str) -> None:
    fp = certs.fingerprints(certs.load_certificate_der(path))
    print(f"SHA-256 fingerprint: {fp['sha256']}")
    print(f"SHA-1 fingerprint: {fp['sha1']}")
