"""The TOML configuration file, read once and validated up front.

``load_config(path)`` turns ``/etc/sstpd/sstpd.toml`` into a frozen :class:`Config`.
Every problem is reported as a :class:`~sstpd.errors.ConfigError` naming the file, the
line and the dotted key, for example::

    /etc/sstpd/sstpd.toml:12: tunnel.pool: 10.0.0.0/33 is not an IPv4 network

``tomllib`` reports the position of syntax errors only; for a value that parses but is
wrong, the line is found by scanning the text for the ``[section]`` header and the
``key =`` line below it (``reader``). Unknown sections and keys are errors, with a
"did you mean" hint when the name is close to a known one: a typo must never silently
fall back to a default.

All keys are optional; the defaults are the ones documented in the class docstrings.
Relative paths are resolved against the directory of the configuration file.

The modules, one concern each:

* ``model``: the dataclasses (one per section), defaults and the limits of the values;
* ``reader``: locating a key's line in the text, ``Source``/``Section`` typed getters;
* ``sections``: the ``[server]``, ``[auth]``, ``[radius]``, ``[acme]``, ``[limits]`` parsers;
* ``tunnel``: the ``[tunnel]`` parser (pool, IPv6, DNS, routes, domain);
* ``load``: the known keys, ``load_config``/``parse_config``/``default_config`` and the
  checks across sections.
"""

from __future__ import annotations

from sstpd.config.load import default_config, load_config, parse_config
from sstpd.config.model import (
    DEFAULT_CIPHERS,
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIRECTORY,
    AcmeConfig,
    AuthConfig,
    Config,
    LimitsConfig,
    LogConfig,
    RadiusConfig,
    RadiusServer,
    ServerConfig,
    TunnelConfig,
)
from sstpd.errors import ConfigError

__all__ = [
    "DEFAULT_CIPHERS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIRECTORY",
    "AcmeConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "LogConfig",
    "RadiusConfig",
    "RadiusServer",
    "ServerConfig",
    "TunnelConfig",
    "default_config",
    "load_config",
    "parse_config",
]
