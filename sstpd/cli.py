"""The ``sstpd`` command: serve, check-config, user, cert, profile, connect, ctl.

Exit codes: 0 success, 1 a reported failure (bad config, missing user, ...), 2 usage
errors (argparse). Passwords and NT hashes are never printed, except the hashes by
``sstpd user list --show-hash``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from ipaddress import ip_address

from sstpd import __version__, certs, users
from sstpd.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIRECTORY,
    Config,
    default_config,
    load_config,
)
from sstpd.errors import SstpdError
from sstpd.files import check_secret_mode, write_atomic

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["connect"]:
        # Forwarded untouched: argparse would otherwise try to parse the client's options.
        return _connect(args_list[1:])
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
        _err(str(e))
        return 1
    except OSError as e:
        _err(f"{e.filename}: {e.strerror}" if e.filename else str(e))
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
    p.set_defaults(handler=_serve)

    p = sub.add_parser("check-config", help="validate a configuration file and what it names")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=_check_config)

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
    p.set_defaults(handler=_user_add)
    p = user_sub.add_parser("del", parents=[where], help="delete a user")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=_user_del)
    p = user_sub.add_parser("list", parents=[where], help="list users and static addresses")
    p.add_argument("--show-hash", action="store_true", help="also print the NT hashes")
    p.set_defaults(handler=_user_list)

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
    p.set_defaults(handler=_cert)

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
    p.set_defaults(handler=_profile)

    p = sub.add_parser("connect", help="connect to an SSTP server (the test client)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=lambda a: _connect(a.args))

    p = sub.add_parser("ctl", help="control the running daemon (same as sstpctl)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _err(message: str) -> None:
    print(f"sstpd: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# serve


def _state_directory() -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
    env = os.environ.get("STATE_DIRECTORY", "")
    return env.split(":")[0] if env else DEFAULT_STATE_DIRECTORY


def _effective_config(config_path: str | None) -> tuple[Config, str | None]:
    """The config from ``config_path``, else from the default path when it exists,
    else the embedded default (then the returned path is None)."""
    if config_path is None and os.path.exists(DEFAULT_CONFIG_PATH):
        config_path = DEFAULT_CONFIG_PATH
    if config_path is None:
        return default_config(_state_directory()), None
    return load_config(config_path), config_path


def _is_under(path: str, directory: str) -> bool:
    path, directory = os.path.abspath(path), os.path.abspath(directory)
    return os.path.commonpath([path, directory]) == directory


def _auto_certificate(config: Config) -> bool:
    """True when serve creates the certificate itself: both files are missing and lie
    under the state directory (the embedded default always puts them there)."""
    sc = config.server
    return (
        sc.tls
        and not os.path.exists(sc.certificate)
        and not os.path.exists(sc.key)
        and _is_under(sc.certificate, sc.state_directory)
        and _is_under(sc.key, sc.state_directory)
    )


def _acme_placeholder(config: Config) -> bool:
    """True when serve writes a self-signed placeholder until ACME delivers."""
    sc = config.server
    return (
        config.acme.enabled
        and sc.tls
        and not os.path.exists(sc.certificate)
        and not os.path.exists(sc.key)
    )


def _check_acme_installed() -> None:
    try:
        import sstpd.acmeclient  # noqa: F401
    except ImportError as exc:
        raise SstpdError(
            f"[acme] needs the acme and josepy packages ({exc}): pip install 'sstpd[acme]'"
        ) from None


def _certificate_names(config: Config) -> tuple[str, list[str]]:
    host = socket.gethostname() or "localhost"
    sans = [host]
    for address in config.server.listen:
        if not address.is_unspecified and str(address) not in sans:
            sans.append(str(address))
    return host, sans


def _serve(args: argparse.Namespace) -> int:
    config, config_path = _effective_config(args.config)
    if args.worker:
        from sstpd.aio.daemon import run as run_worker  # type: ignore[import-not-found]
        from sstpd.aio.workers import WorkerRole

        return int(run_worker(config, config_path, WorkerRole.from_env(config)))
    sc = config.server
    created = False
    names = list(config.acme.names)
    if _acme_placeholder(config):
        # ACME: serve a self-signed placeholder until the CA's certificate is installed
        created = certs.ensure_certificate(sc.certificate, sc.key, names[0], names)
    elif _auto_certificate(config):
        cn, sans = _certificate_names(config)
        created = certs.ensure_certificate(sc.certificate, sc.key, cn, sans)
    if config_path is None or created:
        _print_first_start(config, created)
    # secrets readable by other users: refuse before anything starts
    check_secret_mode(config.auth.users_file)
    if sc.tls:
        check_secret_mode(sc.key)
    from sstpd.aio.daemon import run  # type: ignore[import-not-found]

    result = run(config, config_path)
    return result if isinstance(result, int) else 0


def _print_first_start(config: Config, created: bool) -> None:
    sc = config.server
    users_file = config.auth.users_file
    lines = []
    if sc.tls:
        fp = certs.fingerprints(certs.load_certificate_der(sc.certificate))
        verb = "created a self-signed" if created else "using the"
        lines += [
            f"{verb} certificate {sc.certificate} (key {sc.key})",
            f"  SHA-256 fingerprint: {fp['sha256']}",
        ]
    have_users = os.path.exists(users_file)
    lines.append(f"users file: {users_file}{'' if have_users else ' (does not exist yet)'}")
    lines.append(f"add a user with: sstpd user add NAME --users-file {shlex.quote(users_file)}")
    for line in lines:
        print(f"sstpd: {line}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# check-config


def _check_config(args: argparse.Namespace) -> int:
    path: str = args.file
    try:
        config = load_config(path)
        if os.path.exists(config.auth.users_file):
            users.load_users(config.auth.users_file)
        sc = config.server
        auto = _auto_certificate(config) or _acme_placeholder(config)
        if config.acme.enabled:
            _check_acme_installed()
        if sc.tls and not auto:
            check_secret_mode(sc.key)
            certs.verify_key_pair(sc.certificate, sc.key)
        if sc.tls and sc.chain:
            certs.load_certificate_der(sc.chain)
    except SstpdError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"{path}: OK")
    rc = config.radius
    if rc.servers or rc.accounting_servers:
        print(
            f"{path}: authentication by {' then '.join(config.auth.backends)}; RADIUS: "
            f"{len(rc.servers)} authentication, {len(rc.accounting_servers)} accounting servers"
            + (
                f", Disconnect-Requests on {rc.dae_listen[0]}:{rc.dae_listen[1]}"
                if rc.dae_listen
                else ""
            )
        )
    if auto:
        print(f"{path}: note: {sc.certificate} will be created when sstpd starts")
    return 0


# ---------------------------------------------------------------------------------------
# user


def _users_file(args: argparse.Namespace) -> str:
    if args.users_file:
        return str(args.users_file)
    config, _ = _effective_config(args.config)
    return config.auth.users_file


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise ValueError("the passwords do not match")
        return first
    return _read_line()


def _read_line() -> str:
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _user_add(args: argparse.Namespace) -> int:
    path = _users_file(args)
    password: str | None = None
    nt_hash: str | None = args.nt_hash
    if nt_hash is None:
        if args.password is not None:
            password = args.password
        elif args.password_stdin:
            password = _read_line()
        else:
            password = _read_password()
        if not password:
            raise ValueError("empty password")
    user = users.add_user(
        path,
        args.name,
        password=password,
        nt_hash=nt_hash,
        address=args.address,
        ipv6_prefix=args.ipv6_prefix,
    )
    statics = [str(a) for a in (user.address, user.ipv6_prefix) if a is not None]
    where = f" with address {' and '.join(statics)}" if statics else ""
    print(f"user {user.name!r}{where} saved in {path}")
    return 0


def _user_del(args: argparse.Namespace) -> int:
    path = _users_file(args)
    if users.delete_user(path, args.name):
        print(f"user {args.name!r} deleted from {path}")
        return 0
    _err(f"{path}: no user {args.name!r}")
    return 1


def _user_list(args: argparse.Namespace) -> int:
    path = _users_file(args)
    if not os.path.exists(path):
        _err(f"{path}: no users file yet")
        return 0
    for user in users.load_users(path).values():
        fields = [user.name, str(user.address) if user.address else "-"]
        fields.append(str(user.ipv6_prefix) if user.ipv6_prefix else "-")
        if args.show_hash:
            fields.append(user.nt_hash.hex())
        print("\t".join(fields))
    return 0


# ---------------------------------------------------------------------------------------
# cert


def _cert(args: argparse.Namespace) -> int:
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
        config, _ = _effective_config(None)
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


# ---------------------------------------------------------------------------------------
# profile


def _profile(args: argparse.Namespace) -> int:
    from sstpd.profiles import make_profile

    config, _ = _effective_config(args.config)
    profile = make_profile(config, args.platform, args.user)
    data = profile.text.encode()
    if args.out:
        write_atomic(args.out, data, 0o644)
        print(f"{args.platform} profile written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------
# connect


def _connect(argv: Sequence[str]) -> int:
    from sstpd.aio.client import main as client_main  # type: ignore[import-not-found]

    result = client_main(list(argv))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
