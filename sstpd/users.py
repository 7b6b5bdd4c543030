"""The users file: one user per line, NT password hashes only, never plaintext.

Format (``#`` comments and blank lines allowed)::

    # name:nt:<NT hash, 32 hex digits>[:<static IPv4 address>[:<static IPv6 /64>]]
    alice:nt:44ebba8d5312b8d611474411f56989ae
    bob:nt:8846f7eaee8fb117ad06bdd830b7586c:10.77.0.20
    carol:nt:5835048ce94ad0564e29a924a03510ef:10.77.0.21:2001:db8:77:21::/64
    dave:nt:2d20d252a479f485cdf5e171d93985bf::2001:db8:77:22::/64

The fifth field (everything after the fourth colon, so the IPv6 colons need no quoting)
is a static /64 for the user's IPv6 session (``[tunnel] ipv6_pool``); leave the IPv4
field empty to give only a static prefix.

The NT hash (MD4 of the UTF-16LE password) is all MS-CHAPv2 needs, and PAP is checked
by hashing the password the client sends. A user name is 1-64 printable characters
without ``:`` or white space (and does not start with ``#``).

Writes are atomic (temporary file in the same directory, fsync, rename) so the daemon,
which re-reads the file on SIGHUP, never sees half a file. ``add_user`` and
``delete_user`` edit the file line by line and keep the administrator's comments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network

from sstpd.errors import ConfigError
from sstpd.files import acceptable_secret_mode, check_secret_mode, read_text, write_atomic

__all__ = ["User", "add_user", "delete_user", "load_users", "save_users", "validate_name"]

NAME_MAX = 64
NT_HASH_SIZE = 16
FILE_MODE = 0o600
_HEX32_RE = re.compile(r"[0-9a-fA-F]{32}")
_HEADER = "# sstpd users: name:nt:<NT hash>[:<static IPv4 address>[:<static IPv6 /64>]]\n"


@dataclass(frozen=True)
class User:
    """One user: ``nt_hash`` is the 16-byte NT password hash, ``address`` a static
    tunnel address and ``ipv6_prefix`` a static /64, None for ones from the pools."""

    name: str
    nt_hash: bytes
    address: IPv4Address | None = None
    ipv6_prefix: IPv6Network | None = None

    def __repr__(self) -> str:
        # Keep the hash out of logs and tracebacks.
        return (
            f"User(name={self.name!r}, nt_hash=<hidden>, address={self.address!r}, "
            f"ipv6_prefix={self.ipv6_prefix!r})"
        )

    def to_line(self) -> str:
        line = f"{self.name}:nt:{self.nt_hash.hex()}"
        if self.address is not None or self.ipv6_prefix is not None:
            line += f":{self.address or ''}"
        if self.ipv6_prefix is not None:
            line += f":{self.ipv6_prefix}"
        return line


def validate_name(name: str) -> str | None:
    """The reason ``name`` is not a valid user name, or None when it is."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"a user name must be 1-{NAME_MAX} characters"
    if ":" in name or any(c.isspace() for c in name) or not name.isprintable():
        return "a user name must be printable, without ':' or white space"
    if name.startswith("#"):
        return "a user name must not start with '#'"
    return None


def _parse_line(text: str) -> User | str | None:
    """A User, a reason the line is bad, or None for a blank or comment line."""
    line = text.strip()
    if not line or line.startswith("#"):
        return None
    fields = line.split(":", 4)  # the fifth field is an IPv6 prefix, colons and all
    if len(fields) < 3:
        return "expected name:nt:<32 hex digits>[:<IPv4 address>[:<IPv6 /64>]]"
    name, kind, digest = fields[:3]
    reason = validate_name(name)
    if reason:
        return reason
    if kind != "nt":
        return f"unknown hash type {kind!r} (only 'nt' is supported)"
    if not _HEX32_RE.fullmatch(digest):
        return "the NT hash must be 32 hex digits"
    address = None
    if len(fields) >= 4 and (fields[3] or len(fields) == 4):
        try:
            address = IPv4Address(fields[3])
        except ValueError:
            if len(fields) == 5 and all(c in "0123456789abcdefABCDEF" for c in fields[3]):
                return (
                    f"{':'.join(fields[3:])!r}: an IPv6 prefix goes in the fifth field"
                    " (leave the IPv4 one empty: name:nt:<hash>::<prefix>)"
                )
            return f"{fields[3]!r} is not an IPv4 address"
    prefix = None
    if len(fields) == 5:
        prefix_or_reason = parse_ipv6_prefix(fields[4])
        if isinstance(prefix_or_reason, str):
            return prefix_or_reason
        prefix = prefix_or_reason
    return User(name, bytes.fromhex(digest), address, prefix)


def parse_ipv6_prefix(text: str) -> IPv6Network | str:
    """A static session prefix (a /64 without host bits), or the reason ``text`` is not."""
    try:
        prefix = IPv6Network(text, strict=True)
    except ValueError:
        return f"{text!r} is not an IPv6 prefix (a /64 such as 2001:db8:1:2::/64)"
    if prefix.prefixlen != 64:
        return f"{prefix}: a static IPv6 prefix is a /64"
    return prefix


def _read(path: str) -> tuple[list[str], list[User | None]]:
    """The file's lines and, per line, its user (None for blank/comment lines).

    Raises ConfigError for a missing or unreadable file, a bad line, a duplicate user
    or a static address given to two users.
    """
    text = read_text(path)
    # Split on "\n" only: line numbers must match what an editor shows.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    users: list[User | None] = []
    names: dict[str, int] = {}
    addresses: dict[IPv4Address | IPv6Network, str] = {}
    for number, line in enumerate(lines, 1):
        parsed = _parse_line(line)
        if isinstance(parsed, str):
            raise ConfigError(path, parsed, line=number)
        if parsed is not None:
            if parsed.name in names:
                raise ConfigError(
                    path,
                    f"duplicate user (first defined on line {names[parsed.name]})",
                    line=number,
                    key=parsed.name,
                )
            names[parsed.name] = number
            if parsed.address is not None:
                if parsed.address in addresses:
                    raise ConfigError(
                        path,
                        f"address {parsed.address} is already given to "
                        f"{addresses[parsed.address]!r}",
                        line=number,
                        key=parsed.name,
                    )
                addresses[parsed.address] = parsed.name
            if parsed.ipv6_prefix is not None:
                if parsed.ipv6_prefix in addresses:
                    raise ConfigError(
                        path,
                        f"prefix {parsed.ipv6_prefix} is already given to "
                        f"{addresses[parsed.ipv6_prefix]!r}",
                        line=number,
                        key=parsed.name,
                    )
                addresses[parsed.ipv6_prefix] = parsed.name
        users.append(parsed)
    return lines, users


def load_users(path: str) -> dict[str, User]:
    """Read the users file: name -> User, in file order. Raises ConfigError, also when the
    file is readable by other users (it must be 0600, or 0640 with the daemon's group)."""
    check_secret_mode(path)
    _, users = _read(path)
    return {u.name: u for u in users if u is not None}


def save_users(path: str, users: Mapping[str, User] | Iterable[User]) -> None:
    """Replace the users file with ``users`` (atomically, mode 0600 for a new file)."""
    values = users.values() if isinstance(users, Mapping) else users
    write_atomic(
        path,
        (_HEADER + "".join(u.to_line() + "\n" for u in values)).encode(),
        mode=acceptable_secret_mode(path),
    )


def add_user(
    path: str,
    name: str,
    password: str | None = None,
    nt_hash: bytes | str | None = None,
    address: IPv4Address | str | None = None,
    ipv6_prefix: IPv6Network | str | None = None,
) -> User:
    """Add ``name`` to the users file, replacing the user if it exists.

    Give exactly one of ``password`` (hashed here, never stored) or ``nt_hash`` (16
    bytes, or 32 hex digits). Creates the file (and its directory, mode 0700) when
    missing. Raises ValueError for bad arguments and ConfigError for a bad file.
    """
    user = make_user(
        name, password=password, nt_hash=nt_hash, address=address, ipv6_prefix=ipv6_prefix
    )
    lines, users = _read(path) if os.path.exists(path) else ([_HEADER.rstrip("\n")], [None])
    for existing in users:
        if (
            existing is not None
            and existing.name != name
            and user.address is not None
            and existing.address == user.address
        ):
            raise ValueError(f"address {user.address} is already given to {existing.name!r}")
        if (
            existing is not None
            and existing.name != name
            and user.ipv6_prefix is not None
            and existing.ipv6_prefix == user.ipv6_prefix
        ):
            raise ValueError(f"prefix {user.ipv6_prefix} is already given to {existing.name!r}")
    for i, existing in enumerate(users):
        if existing is not None and existing.name == name:
            lines[i] = user.to_line()
            break
    else:
        lines.append(user.to_line())
    # a mode that lets others read the hashes is not kept: 0600 (0640 with our group stays)
    write_atomic(
        path, "".join(line + "\n" for line in lines).encode(), mode=acceptable_secret_mode(path)
    )
    return user


def delete_user(path: str, name: str) -> bool:
    """Remove ``name`` from the users file; False when there was no such user (or file)."""
    if not os.path.exists(path):
        return False
    lines, users = _read(path)
    keep = [
        line for line, user in zip(lines, users, strict=True) if user is None or user.name != name
    ]
    if len(keep) == len(lines):
        return False
    write_atomic(
        path, "".join(line + "\n" for line in keep).encode(), mode=acceptable_secret_mode(path)
    )
    return True


def make_user(
    name: str,
    *,
    password: str | None = None,
    nt_hash: bytes | str | None = None,
    address: IPv4Address | str | None = None,
    ipv6_prefix: IPv6Network | str | None = None,
) -> User:
    """Validate the arguments and build a User (see :func:`add_user`)."""
    reason = validate_name(name)
    if reason:
        raise ValueError(reason)
    if (password is None) == (nt_hash is None):
        raise ValueError("give exactly one of a password or an NT hash")
    if password is not None:
        from sstpd.proto.mschap import nt_password_hash

        digest = nt_password_hash(password)
    elif isinstance(nt_hash, str):
        text = nt_hash.replace(":", "")
        if not _HEX32_RE.fullmatch(text):
            raise ValueError("the NT hash must be 32 hex digits")
        digest = bytes.fromhex(text)
    else:
        assert nt_hash is not None
        digest = bytes(nt_hash)
    if len(digest) != NT_HASH_SIZE:
        raise ValueError(f"the NT hash must be {NT_HASH_SIZE} bytes")
    if isinstance(address, str):
        try:
            address = IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 address") from None
    if ipv6_prefix is not None:
        parsed = parse_ipv6_prefix(str(ipv6_prefix))
        if isinstance(parsed, str):
            raise ValueError(parsed)
        ipv6_prefix = parsed
    return User(name, digest, address, ipv6_prefix)
