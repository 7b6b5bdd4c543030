"""What the ``sstpd`` subcommands share: the error line and the effective configuration."""

from __future__ import annotations

import os
import sys

from sstpd.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIRECTORY,
    Config,
    default_config,
    load_config,
)


def err(message: str) -> None:
    print(f"sstpd: {message}", file=sys.stderr)


def _state_directory() -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
    env = os.environ.get("STATE_DIRECTORY", "")
    return env.split(":")[0] if env else DEFAULT_STATE_DIRECTORY


def effective_config(config_path: str | None) -> tuple[Config, str | None]:
    """The config from ``config_path``, else from the default path when it exists,
    else the embedded default (then the returned path is None)."""
    if config_path is None and os.path.exists(DEFAULT_CONFIG_PATH):
        config_path = DEFAULT_CONFIG_PATH
    if config_path is None:
        return default_config(_state_directory()), None
    return load_config(config_path), config_path
