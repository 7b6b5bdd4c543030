"""Reading and replacing the daemon's files safely (config, users file, keys)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from sstpd.errors import ConfigError


def read_text(path: str) -> str:
    """The UTF-8 text of ``path``; ConfigError naming the file (and line) otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(path, "not valid UTF-8", line=line) from None


def secret_mode_problem(path: str) -> str | None:
    """Why the secret file ``path`` (users file, TLS key) is too open, or None.

    Allowed: no access for others, and for the group at most read access when the file's
    group is one of this process's groups (0600, 0400, or 0640 with our group)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot stat: {e.strerror or e}"
    mode = stat.S_IMODE(st.st_mode)
    ours = st.st_gid == os.getegid() or st.st_gid in os.getgroups()
    if mode & 0o007 or mode & 0o030 or (mode & 0o040 and not ours):
        return (
            f"mode {mode:04o} lets other users read it; it must be 0600 (or 0640 with the "
            f"daemon's group): chmod 600 {path}"
        )
    return None


def check_secret_mode(path: str) -> None:
    """ConfigError when ``path`` is readable by others (see ``secret_mode_problem``)."""
    problem = secret_mode_problem(path)
    if problem:
        raise ConfigError(path, problem)


def acceptable_secret_mode(path: str, default: int = 0o600) -> int:
    """The mode to give a rewritten secret file: its own when acceptable, else 0600."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return default
    return mode if secret_mode_problem(path) is None else default


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` via a temporary file, fsync and rename.

    ``mode`` given: the file gets it. Otherwise an existing file keeps its mode and
    owner (the owner only where we may set it: as root or as that owner) and a new one
    gets 0600. Readers never see a half-written file, and a failure leaves the old one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, temp = tempfile.mkstemp(prefix=".sstpd.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            else:
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) if st else 0o600)
                if st is not None:
                    with contextlib.suppress(PermissionError):
                        os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
