"""The effective configuration as plain data: what ``sstpd config show`` prints.

:func:`config_view` turns a validated :class:`~sstpd.config.Config` into nested dicts in
the configuration file's own vocabulary (sections and keys as in ``sstpd.toml``, every
default filled in, addresses and networks as strings, ``host:port`` as written), so that
scripts (the appliance's first-boot helper, say) read the values the daemon would use
instead of parsing the TOML and repeating its defaults. RADIUS shared secrets are
replaced by :data:`REDACTED`; nothing else in a configuration is secret.
"""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from sstpd.config import Config, RadiusServer

__all__ = ["REDACTED", "config_view", "view_json", "view_toml"]

REDACTED = "(redacted)"

# Config field -> configuration file key, where they differ.
_KEYS = {
    ("radius", "servers"): "server",
    ("radius", "accounting_servers"): "accounting_server",
    ("radius", "dae_clients"): "dae_client",
}
_HOST_PORT = {("server", "web_backend"), ("radius", "dae_listen")}
# Sections written as arrays of tables ([[radius.server]]) in the TOML form.
_TABLE_ARRAYS = {("radius", "server"), ("radius", "accounting_server"), ("radius", "dae_client")}


def config_view(config: Config) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` for every section and key, defaults included."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        table: dict[str, Any] = {}
        for f in dataclasses.fields(values):
            key = _KEYS.get((section.name, f.name), f.name)
            value = getattr(values, f.name)
            if (section.name, f.name) in _HOST_PORT:
                table[key] = _host_port(value)
            else:
                table[key] = _plain(value)
        out[section.name] = table
    return out


def _host_port(value: tuple[str, int] | None) -> str:
    if value is None:
        return ""
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _plain(value: object) -> Any:
    if isinstance(value, RadiusServer):
        return {"address": value.address, "port": value.port, "secret": REDACTED}
    if isinstance(value, (IPv4Address, IPv6Address, IPv4Network, IPv6Network)):
        return str(value)
    if isinstance(value, bytes):  # the certificate hashes: public digests
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"no plain form for {type(value).__name__}")  # a new field type


def view_json(config: Config) -> str:
    return json.dumps(config_view(config), indent=2, sort_keys=False) + "\n"


def view_toml(config: Config) -> str:
    """The same in TOML (None values, which TOML cannot write, are left out as comments)."""
    lines: list[str] = []
    for section, table in config_view(config).items():
        arrays = {k: v for k, v in table.items() if (section, k) in _TABLE_ARRAYS}
        lines.append(f"[{section}]")
        for key, value in table.items():
            if key in arrays:
                continue
            lines.append(f"# {key} = (not set)" if value is None else f"{key} = {_toml(value)}")
        for key, items in arrays.items():
            for item in items:
                lines += ["", f"[[{section}.{key}]]"]
                lines += [f"{k} = {_toml(v)}" for k, v in item.items()]
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a TOML basic string
