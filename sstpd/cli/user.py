"""``sstpd user add|del|list``: the users file."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from sstpd import users
from sstpd.cli.common import effective_config, err


def _users_file(args: argparse.Namespace) -> str:
    if args.users_file:
        return str(args.users_file)
    config, _ = effective_config(args.config)
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


def user_add(args: argparse.Namespace) -> int:
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


def user_del(args: argparse.Namespace) -> int:
    path = _users_file(args)
    if users.delete_user(path, args.name):
        print(f"user {args.name!r} deleted from {path}")
        return 0
    err(f"{path}: no user {args.name!r}")
    return 1


def user_list(args: argparse.Namespace) -> int:
    path = _users_file(args)
    if not os.path.exists(path):
        err(f"{path}: no users file yet")
        return 0
    for user in users.load_users(path).values():
        fields = [user.name, str(user.address) if user.address else "-"]
        fields.append(str(user.ipv6_prefix) if user.ipv6_prefix else "-")
        if args.show_hash:
            fields.append(user.nt_hash.hex())
        print("\t".join(fields))
    return 0
