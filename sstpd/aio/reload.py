"""Which settings a live reload can apply, and the configuration it runs with afterwards.

Listeners, the TUN device and the address pool are set up once at start; a reload that
changes them is accepted for everything else and reports those keys as "needs restart"
(the running values stay in force). Every other setting applies to new sessions:
existing sessions keep the settings, certificate hashes and PPP options they started with.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from sstpd.config import Config

# Everything else is live. For the abuse limits that means: ``limits.pending_total``,
# ``pending_per_source`` and ``setup_timeout`` apply to connections accepted after the
# reload (connections already pending keep their slot and deadline); the failed-login
# throttle (``limits.auth_fail_*``) keeps its counters and blocks and uses the new
# settings from the next failure on; ``auth.max_sessions_per_user`` and
# ``session_limit_action`` apply to the next login.

# dotted keys whose new value only takes effect when sstpd restarts
RESTART_ONLY = frozenset(
    {
        "server.listen",
        "server.port",
        "server.tls",
        "server.proxy_protocol",
        "server.control_socket",
        "server.control_group",
        "server.state_directory",
        "server.workers",
        "tunnel.interface",
        "tunnel.address",
        "tunnel.pool",
        "tunnel.mtu",
        "tunnel.offload",  # the TUN device's flags are set when it is opened
        # the IPv6 pool and the server's IPv6 address are set up on the TUN at start, like
        # their IPv4 counterparts; ipv6_dns, routes and domain only shape what new Router
        # Advertisements and DHCPACKs say, so a reload applies them.
        "tunnel.ipv6_pool",
        "tunnel.ipv6_address",
        # the ACME manager and the challenge listener are set up at start
        "acme.names",
        "acme.directory",
        "acme.email",
        "acme.key_type",
        "acme.ca_file",
        "acme.challenge",
        "acme.http_port",
        "acme.retry_interval",
        "radius.dae_listen",
    }
)


def live_config(running: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """``(effective, changed, needs_restart)``.

    ``effective`` is ``new`` with the restart-only settings of ``running``; ``changed``
    lists the dotted keys that take effect, ``needs_restart`` describes the ignored
    changes as ``"key: old -> new"``."""
    changed: list[str] = []
    restart: list[str] = []
    sections: dict[str, Any] = {}
    for section in fields(Config):
        old_sec = getattr(running, section.name)
        new_sec = getattr(new, section.name)
        keep: dict[str, Any] = {}
        for f in fields(old_sec):
            key = f"{section.name}.{f.name}"
            before, after = getattr(old_sec, f.name), getattr(new_sec, f.name)
            if before == after:
                continue
            if key in RESTART_ONLY:
                restart.append(f"{key}: {_show(before)} -> {_show(after)}")
                keep[f.name] = before
            else:
                changed.append(key)
        sections[section.name] = replace(new_sec, **keep)
    return Config(**sections), changed, restart


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
