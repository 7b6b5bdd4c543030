"""The ``sstpd`` command: serve, check-config, config, user, cert, profile, connect, ctl.

Exit codes: 0 success, 1 a reported failure (bad config, missing user, ...), 2 usage
errors (argparse). Passwords and NT hashes are never printed, except the hashes by
``sstpd user list --show-hash``. This module is the argparse tree and the dispatch; each
subcommand lives in its own module of ``sstpd.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sstpd import __version__, certs
from sstpd.cli.cert import cert
from sstpd.cli.common import err
from sstpd.cli.serve import check_config, serve
from sstpd.cli.show import config_show, profile
from sstpd.cli.user import user_add, user_del, user_list
from sstpd.config import DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIRECTORY
from sstpd.errors import SstpdError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["connect"]:
        # Forwarded untouched: argparse would otherwise try to parse the client's options.
        return connect(args_list[1:])
    if args_list[:1] == ["ctl"]:
        from sstpd import ctl

        return ctl.main(args_list[1:], prog="sstpd ctl")
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = args.handler(args)
    except (SstpdError, ValueError) as e:
        err(str(e))
        return 1
    except OSError as e:
        err(f"{e.filename}: {e.strerror}" if e.filename else str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sstpd", description="SSTP VPN server with PPP negotiated in userspace."
    )
    parser.add_argument("--version", action="version", version=f"sstpd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the server")
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG_PATH} if it exists, else the "
        "built-in defaults with the state directory $STATE_DIRECTORY or "
        f"{DEFAULT_STATE_DIRECTORY})",
    )
    # one of server.workers processes, started by the supervisor (sstpd.aio.workers)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=serve)

    p = sub.add_parser("check-config", help="validate a configuration file and what it names")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=check_config)

    p = sub.add_parser("config", help="show the effective configuration")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser(
        "show",
        help="print every key with its effective value (defaults filled in)",
        description="Print the configuration the daemon would use: every section and key, "
        "defaults filled in, relative paths resolved, RADIUS secrets redacted. Nothing "
        "it names (certificate, users file) is checked; check-config does that.",
    )
    p.add_argument("--config", metavar="FILE", help="configuration file (as for serve)")
    p.add_argument("--json", action="store_true", help="JSON instead of TOML")
    p.set_defaults(handler=config_show)

    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--users-file", metavar="PATH", help="the users file to edit")
    group.add_argument("--config", metavar="FILE", help="take the users file from this config")
    p = sub.add_parser("user", help="manage the users file")
    user_sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = user_sub.add_parser("add", parents=[where], help="add or replace a user")
    p.add_argument("name", metavar="NAME")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from one stdin line"
    )
    secret.add_argument("--password", metavar="PASS", help="the password (visible in ps!)")
    secret.add_argument("--nt-hash", metavar="HEX", help="the NT hash instead of a password")
    p.add_argument("--address", metavar="IP", help="static tunnel address for this user")
    p.add_argument(
        "--ipv6-prefix", metavar="PREFIX", help="static IPv6 /64 for this user (tunnel.ipv6_pool)"
    )
    p.set_defaults(handler=user_add)
    p = user_sub.add_parser("del", parents=[where], help="delete a user")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=user_del)
    p = user_sub.add_parser("list", parents=[where], help="list users and static addresses")
    p.add_argument("--show-hash", action="store_true", help="also print the NT hashes")
    p.set_defaults(handler=user_list)

    p = sub.add_parser("cert", help="create a self-signed certificate or show fingerprints")
    p.add_argument("--show", metavar="FILE", help="print the fingerprints of this certificate")
    p.add_argument("--out-dir", metavar="DIR", help="write DIR/server.crt and DIR/server.key")
    p.add_argument("--cert", metavar="FILE", help="certificate file to write")
    p.add_argument("--key", metavar="FILE", help="private key file to write")
    p.add_argument("--cn", metavar="NAME", help="common name (default: this host's name)")
    p.add_argument(
        "--san",
        metavar="NAME",
        nargs="+",
        action="extend",
        help="subjectAltName DNS names or IP addresses (default: the common name)",
    )
    p.add_argument("--days", type=int, default=certs.DEFAULT_DAYS, metavar="N")
    p.add_argument("--key-type", choices=("rsa", "ec"), default="rsa")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(handler=cert)

    p = sub.add_parser(
        "profile",
        help="write a client's setup (Windows, MikroTik, NetworkManager, sstpc)",
        description="Write the setup of a client from the configuration: the server's name, "
        "port, certificate to trust, authentication, routes and DNS suffix. No secret is in it.",
    )
    p.add_argument(
        "platform",
        choices=("windows", "mikrotik", "networkmanager", "sstpc", "certificate"),
        help="windows: PowerShell script; mikrotik: RouterOS script; networkmanager: "
        ".nmconnection keyfile; sstpc: shell script; certificate: the certificate to trust",
    )
    p.add_argument("--config", metavar="FILE", help="configuration file (as for serve)")
    p.add_argument("--user", metavar="NAME", help="fill in this user name")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(handler=profile)

    p = sub.add_parser("connect", help="connect to an SSTP server (the test client)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=lambda a: connect(a.args))

    p = sub.add_parser("ctl", help="control the running daemon (same as sstpctl)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def connect(argv: Sequence[str]) -> int:
    from sstpd.aio.client import main as client_main  # type: ignore[import-not-found]

    result = client_main(list(argv))
    return result if isinstance(result, int) else 0
