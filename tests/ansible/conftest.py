from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ansible: runs site.yml against Debian 12 containers (systemd-nspawn, needs root)",
    )
