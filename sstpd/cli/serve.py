"""``sstpd serve`` (the certificate it creates on a first start) and ``sstpd check-config``."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys

from sstpd import certs, users
from sstpd.cli.common import effective_config
from sstpd.config import Config, load_config
from sstpd.errors import SstpdError
from sstpd.files import check_secret_mode


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


def serve(args: argparse.Namespace) -> int:
    config, config_path = effective_config(args.config)
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


def check_config(args: argparse.Namespace) -> int:
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
