"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.

A worker process (``server.workers`` > 1) has no $NOTIFY_SOCKET: its notifications go
to its supervisor over the datagram socket ``$SSTPD_NOTIFY_FD``, and the supervisor
tells systemd READY=1 once every worker is ready."""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to systemd; False when not run under Type=notify."""
    fd = os.environ.get("SSTPD_NOTIFY_FD")
    if fd:
        try:
            os.write(int(fd), state.encode())  # a SOCK_DGRAM socketpair: one datagram
        except (OSError, ValueError):
            return False
        return True
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True
