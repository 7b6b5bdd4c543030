"""[radius] and auth.backends: parsed values and file:line errors."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from sstpd.config import RadiusServer, parse_config
from sstpd.errors import ConfigError

GOOD = """
[auth]
backends = ["users", "radius"]

[radius]
nas_identifier = "vpn1"
nas_ip_address = "192.0.2.1"
timeout = 2
retries = 1
require_message_authenticator = "auto"
dae_listen = "192.0.2.1:3799"

[[radius.server]]
address = "192.0.2.10"
secret = "s3cret"

[[radius.server]]
address = "192.0.2.11"
port = 11812
secret_file = "radius.secret"

[[radius.accounting_server]]
address = "192.0.2.10"
secret = "acct"

[[radius.dae_client]]
address = "192.0.2.10"
secret = "dae"
"""


def test_full_radius_section(tmp_path: Path) -> None:
    (tmp_path / "radius.secret").write_text("from-file\nignored\n")
    c = parse_config(GOOD, str(tmp_path / "sstpd.toml"))
    assert c.auth.backends == ("users", "radius")
    r = c.radius
    assert r.servers == (
        RadiusServer("192.0.2.10", 1812, b"s3cret"),
        RadiusServer("192.0.2.11", 11812, b"from-file"),
    )
    assert r.accounting_servers == (RadiusServer("192.0.2.10", 1813, b"acct"),)
    assert r.dae_listen == ("192.0.2.1", 3799) and r.dae_clients[0].secret == b"dae"
    assert (r.nas_identifier, r.nas_ip_address, r.timeout, r.retries) == (
        "vpn1",
        IPv4Address("192.0.2.1"),
        2.0,
        1,
    )
    assert r.require_message_authenticator == "auto"
    assert "s3cret" not in repr(c)  # secrets never end up in logs via repr


def test_defaults_have_no_radius() -> None:
    c = parse_config("")
    assert c.auth.backends == ("users",) and c.radius.servers == ()


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('[auth]\nbackends = ["radius"]\n', 2, "no [[radius.server]]"),
        ('[auth]\nbackends = ["ldap"]\n', 2, "'ldap' is not one of users, radius"),
        ("[radius]\ntimeout = 0\n", 2, "must be greater than 0"),
        ('[radius]\nrequire_message_authenticator = "maybe"\n', 2, "is not one of yes"),
        (
            '[[radius.server]]\naddress = "10.0.0.1"\nsecret = "a"\n'
            '[[radius.server]]\naddress = "10.0.0.2"\nport = 0\nsecret = "b"\n',
            6,
            "radius.server[1].port: 0 is out of range",
        ),
        ('[[radius.server]]\naddress = "10.0.0.1"\n', 1, "exactly one of secret and secret_file"),
        ('[[radius.server]]\naddress = "nas"\nsecret = "x"\n', 2, "is not an IP address"),
        ('[[radius.server]]\naddress = "10.0.0.1"\nsecert = "x"\n', 3, "did you mean 'secret'"),
        (
            '[[radius.server]]\naddress = "10.0.0.1"\nsecret_file = "/nonexistent/x"\n',
            3,
            "/nonexistent/x: cannot read",
        ),
        ('[radius]\ndae_listen = "10.0.0.1:3799"\n', 2, "needs at least one"),
    ],
)
def test_errors_name_file_line_key(text: str, line: int, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/etc/sstpd/sstpd.toml")
    assert ei.value.line == line, str(ei.value)
    assert needle in str(ei.value)
    assert str(ei.value).startswith(f"/etc/sstpd/sstpd.toml:{line}:")


def test_reload_applies_radius_settings_but_not_dae_listen() -> None:
    from sstpd.aio.reload import live_config

    base = '[[radius.server]]\naddress = "192.0.2.10"\nsecret = "a"\n'
    dae = '[[radius.dae_client]]\naddress = "192.0.2.10"\nsecret = "d"\n'
    old = parse_config(f'[radius]\ndae_listen = "127.0.0.1:3799"\n{base}{dae}')
    new = parse_config(
        '[auth]\nbackends = ["radius"]\n[radius]\ndae_listen = "127.0.0.1:3800"\ntimeout = 1\n'
        + base.replace('"a"', '"b"')
        + dae
    )
    effective, changed, restart = live_config(old, new)
    assert set(changed) == {"auth.backends", "radius.servers", "radius.timeout"}
    assert restart == ["radius.dae_listen: [127.0.0.1, 3799] -> [127.0.0.1, 3800]"]
    assert effective.radius.dae_listen == ("127.0.0.1", 3799)
    assert effective.radius.servers[0].secret == b"b"
    assert all("b'" not in item for item in restart + changed)  # no secret in the report
