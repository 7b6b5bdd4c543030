"""``sstpd config show``: the effective configuration, defaults filled in, secrets redacted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sstpd import cli
from sstpd.cli import common as cli_common
from sstpd.config import Config, default_config, parse_config
from sstpd.config_view import REDACTED, config_view, view_toml

SECRET = "radius-Secret-xyz"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # where the subcommands' effective_config() reads it
    monkeypatch.setattr(cli_common, "DEFAULT_CONFIG_PATH", str(tmp_path / "etc" / "sstpd.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "sstpd.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


DUAL_STACK = f"""
[server]
port = 4433
certificate = "tls/server.crt"
web_backend = "[::1]:8080"
[tunnel]
pool = "10.9.0.0/24"
address = "10.9.0.1"
ipv6_pool = "2001:db8:100::/56"
ipv6_dns = ["2001:db8::53"]
routes = ["10.1.0.0/16", "192.168.7.0/24"]
domain = "corp.example"
[auth]
backends = ["users", "radius"]
[radius]
dae_listen = "0.0.0.0:3799"
[[radius.server]]
address = "192.0.2.10"
secret = "{SECRET}"
[[radius.dae_client]]
address = "192.0.2.10"
secret_file = "dae.secret"
"""


def test_json_has_every_key_with_defaults_and_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, DUAL_STACK)
    (path.parent / "dae.secret").write_text("dae-Secret-abc\n")
    assert cli.main(["config", "show", "--config", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert SECRET not in out and "dae-Secret-abc" not in out
    # every section and every field of the Config is there
    for section in dataclasses.fields(Config):
        fields = dataclasses.fields(getattr(Config(), section.name))
        assert len(data[section.name]) == len(fields), section.name
    server, tunnel = data["server"], data["tunnel"]
    assert server["port"] == 4433 and server["listen"] == ["0.0.0.0"]  # a default
    assert server["certificate"] == str(path.parent / "tls" / "server.crt")  # resolved
    assert server["control_socket"] == "/run/sstpd/control.sock"
    assert server["web_backend"] == "[::1]:8080"
    expected = {
        "interface": "sstp0",
        "address": "10.9.0.1",
        "pool": "10.9.0.0/24",
        "dns": [],
        "nbns": [],
        "mtu": 1400,
        "ipv6_pool": "2001:db8:100::/56",
        "ipv6_address": "2001:db8:100::1",  # derived from the pool
        "ipv6_dns": ["2001:db8::53"],
        "routes": ["10.1.0.0/16", "192.168.7.0/24"],
        "domain": "corp.example",
    }
    assert {key: tunnel[key] for key in expected} == expected  # (every key: checked above)
    assert data["radius"]["server"] == [{"address": "192.0.2.10", "port": 1812, "secret": REDACTED}]
    assert data["radius"]["dae_client"][0]["port"] == 3799
    assert data["radius"]["dae_listen"] == "0.0.0.0:3799"


def test_toml_form_reads_back_as_the_same_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, DUAL_STACK.split("[auth]")[0])
    config = parse_config(path.read_text(), str(path))
    again = parse_config(view_toml(config), str(path))
    assert again == config


def test_secrets_redacted_in_the_toml_form_too(tmp_path: Path) -> None:
    path = write(tmp_path, DUAL_STACK)
    (path.parent / "dae.secret").write_text("dae-Secret-abc\n")
    text = view_toml(parse_config(path.read_text(), str(path)))
    assert SECRET not in text and "dae-Secret-abc" not in text
    assert f'secret = "{REDACTED}"' in text


def test_without_a_file_it_shows_the_built_in_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == config_view(default_config(str(tmp_path / "state")))
    assert data["server"]["port"] == 443
    assert data["auth"]["users_file"] == str(tmp_path / "state" / "users")
    assert data["tunnel"]["ipv6_pool"] is None


def test_a_bad_file_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[tunnel]\nmtu = 1400\nipv6_pool = "2001:db8::/72"\n')
    assert cli.main(["config", "show", "--config", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:3: tunnel.ipv6_pool" in captured.err
