"""The whole file: the known keys, the entry points, and the checks across sections.

``parse_config`` reads the TOML, rejects unknown sections and keys before any value is
looked at (so that a typo is reported as a typo, with a "did you mean" hint), then
builds each section with its parser (``sstpd.config.sections``, ``sstpd.config.tunnel``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sstpd.config.model import (
    LOG_LEVELS,
    MAX_WORKERS,
    AcmeConfig,
    AuthConfig,
    Config,
    LimitsConfig,
    LogConfig,
    RadiusConfig,
    ServerConfig,
    TunnelConfig,
)
from sstpd.config.reader import Section, Source, split_toml_error, suggest, toml_type
from sstpd.config.sections import parse_acme, parse_auth, parse_limits, parse_radius, parse_server
from sstpd.config.tunnel import parse_tunnel
from sstpd.errors import ConfigError
from sstpd.files import read_text


def _keys(section: type, **renamed: str) -> tuple[str, ...]:
    """The file's keys of a section: its dataclass's fields (``renamed``: field -> key)."""
    return tuple(renamed.get(f.name, f.name) for f in fields(section))


# The known keys of every section, used for the unknown-key check before any value is
# looked at (so that a typo is reported as a typo, not as a missing value). A new key is
# a new field of the section's dataclass (and its parser).
_SCHEMA: dict[str, tuple[str, ...]] = {
    "server": _keys(ServerConfig),
    "tunnel": _keys(TunnelConfig),
    "auth": _keys(AuthConfig),
    "radius": _keys(
        RadiusConfig,  # each [[radius.server]] etc. table is one item of a plural field
        servers="server",
        accounting_servers="accounting_server",
        dae_clients="dae_client",
    ),
    "limits": _keys(LimitsConfig),
    "log": _keys(LogConfig),
    "acme": _keys(AcmeConfig),
}


def load_config(path: str) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises ConfigError when the file cannot be read or is invalid.
    """
    return parse_config(read_text(path), path)


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate the TOML ``text``; ``path`` names it in errors and anchors relative paths.

    When ``path`` is a pseudo-name such as ``<string>``, relative paths are resolved
    against the current directory. Raises ConfigError, and nothing else, on any input.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reason, line = split_toml_error(str(e), text)
        raise ConfigError(path, f"TOML syntax error: {reason}", line=line) from None
    base = os.getcwd() if path.startswith("<") else os.path.dirname(os.path.abspath(path))
    return _build(data, Source(path, text, base))


def default_config(state_directory: str) -> Config:
    """The embedded configuration used when no configuration file exists.

    Listens on 0.0.0.0:443 with the certificate and key at
    ``<state_directory>/tls/server.{crt,key}`` and the users file at
    ``<state_directory>/users``; everything else has its documented default.
    """
    state = os.path.abspath(state_directory)
    data: dict[str, Any] = {
        "server": {
            "state_directory": state,
            "certificate": os.path.join(state, "tls", "server.crt"),
            "key": os.path.join(state, "tls", "server.key"),
        },
        "auth": {"users_file": os.path.join(state, "users")},
    }
    return _build(data, Source("<default>", "", state))


# ---------------------------------------------------------------------------------------
# Unknown names, then every section


def _check_names(data: Mapping[str, Any], src: Source) -> None:
    sections = list(_SCHEMA)
    for name, table in data.items():
        if name not in _SCHEMA:
            # A key that belongs in a section but was written at the top level.
            owners = [s for s, keys in _SCHEMA.items() if name in keys]
            if owners and not isinstance(table, dict):
                hint = f" (did you mean to put it under [{owners[0]}]?)"
            else:
                hint = suggest(name, sections)
            kind = "section" if isinstance(table, dict) else "key"
            raise src.error(None, name, f"unknown {kind} '{name}'{hint}")
        if not isinstance(table, dict):
            raise src.error(None, name, f"expected a table [{name}], got {toml_type(table)}")
        known = list(_SCHEMA[name])
        for key in table:
            if key not in known:
                raise src.error(name, key, f"unknown key '{key}'{suggest(key, known)}")


def _build(data: Mapping[str, Any], src: Source) -> Config:
    _check_names(data, src)
    server = parse_server(Section(src, "server", data.get("server", {})))
    tunnel_section = Section(src, "tunnel", data.get("tunnel", {}))
    tunnel = parse_tunnel(tunnel_section)
    room = 15 - len(f"w{MAX_WORKERS - 1}")
    if server.workers != 1 and len(tunnel.interface) > room:
        # worker N > 0 owns the TUN device "<interface>wN"
        raise tunnel_section.error(
            "interface",
            f"{tunnel.interface!r} is longer than {room} characters, which leaves no room "
            "for the worker suffix of the other workers' devices (or set server.workers = 1)",
        )
    return Config(
        server=server,
        acme=parse_acme(Section(src, "acme", data.get("acme", {})), server),
        tunnel=tunnel,
        auth=(auth := parse_auth(Section(src, "auth", data.get("auth", {})))),
        radius=parse_radius(Section(src, "radius", data.get("radius", {})), auth),
        limits=parse_limits(Section(src, "limits", data.get("limits", {}))),
        log=LogConfig(
            level=Section(src, "log", data.get("log", {})).choice(
                "level", LogConfig.level, LOG_LEVELS
            )
        ),
    )
