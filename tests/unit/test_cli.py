"""sstpd.cli: every subcommand through main([...])."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sstpd import certs, cli
from sstpd.certs import fingerprints, generate_self_signed, load_certificate_der
from sstpd.cli import common as cli_common
from sstpd.config import Config
from sstpd.users import load_users

CLIENT_PASS_NT = "44ebba8d5312b8d611474411f56989ae"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never look at the real /etc/sstpd or /var/lib/sstpd."""
    # where the subcommands' effective_config() reads it
    monkeypatch.setattr(cli_common, "DEFAULT_CONFIG_PATH", str(tmp_path / "etc" / "sstpd.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setattr("socket.gethostname", lambda: "vpn.test")


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[Config, str | None]] = []

    def run(self, config: Config, config_path: str | None) -> int:
        self.calls.append((config, config_path))
        return 0


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    module = types.ModuleType("sstpd.aio.daemon")
    module.run = fake.run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sstpd.aio.daemon", module)
    return fake


def stdin(monkeypatch: pytest.MonkeyPatch, text: str, tty: bool = False) -> None:
    stream = io.StringIO(text)
    stream.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", stream)


def write_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "conf" / "sstpd.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return str(path)


# -- serve ------------------------------------------------------------------------------


def test_serve_embedded_default_creates_certificate(
    tmp_path: Path, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve"]) == 0
    state = tmp_path / "state"
    config, path = server.calls[0]
    assert path is None
    assert config.server.certificate == str(state / "tls" / "server.crt")
    assert config.auth.users_file == str(state / "users")
    fp = fingerprints(load_certificate_der(str(state / "tls" / "server.crt")))
    err = capsys.readouterr().err
    assert str(state / "tls" / "server.crt") in err
    assert fp["sha256"] in err
    assert f"sstpd user add NAME --users-file {state / 'users'}" in err
    # second start: same certificate, still tells where things are
    assert cli.main(["serve"]) == 0
    assert fp["sha256"] in capsys.readouterr().err
    assert fingerprints(load_certificate_der(str(state / "tls" / "server.crt"))) == fp


def test_serve_certificate_names(tmp_path: Path, server: FakeServer) -> None:
    from cryptography import x509

    conf = write_config(
        tmp_path,
        f'[server]\nlisten = ["0.0.0.0", "192.0.2.1", "::"]\nstate_directory = "{tmp_path}/st"\n'
        f'certificate = "{tmp_path}/st/c.pem"\nkey = "{tmp_path}/st/k.pem"\n',
    )
    assert cli.main(["serve", "--config", conf]) == 0
    assert server.calls[0][1] == conf
    cert = x509.load_der_x509_certificate(load_certificate_der(f"{tmp_path}/st/c.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]


def test_serve_uses_default_config_path(tmp_path: Path, server: FakeServer) -> None:
    path = tmp_path / "etc" / "sstpd.toml"
    path.parent.mkdir()
    path.write_text(f'[server]\nport = 8443\ntls = false\ncert_hash_sha1 = "{"00" * 20}"\n')
    assert cli.main(["serve"]) == 0
    assert server.calls[0][0].server.port == 8443
    assert server.calls[0][1] == str(path)


def test_serve_does_not_create_certificate_outside_state_directory(
    tmp_path: Path, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(
        tmp_path, f'[server]\nstate_directory = "{tmp_path}/st"\ncertificate = "c.pem"\n'
    )
    assert cli.main(["serve", "--config", conf]) == 0
    assert not os.path.exists(tmp_path / "conf" / "c.pem")
    assert capsys.readouterr().err == ""


def test_serve_bad_config(
    tmp_path: Path, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(tmp_path, "[server]\nport = 0\n")
    assert cli.main(["serve", "--config", conf]) == 1
    assert f"{conf}:2: server.port: 0 is out of range 1-65535" in capsys.readouterr().err
    assert server.calls == []


# -- check-config ------------------------------------------------------------------------


def good_config(tmp_path: Path) -> str:
    generate_self_signed(
        str(tmp_path / "conf" / "c.pem"), str(tmp_path / "conf" / "k.pem"), common_name="x", sans=[]
    )
    return write_config(
        tmp_path, '[server]\ncertificate = "c.pem"\nkey = "k.pem"\n[auth]\nusers_file = "users"\n'
    )


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = good_config(tmp_path)
    (tmp_path / "conf" / "users").write_text(f"a:nt:{CLIENT_PASS_NT}\n")
    (tmp_path / "conf" / "users").chmod(0o600)
    assert cli.main(["check-config", conf]) == 0
    assert capsys.readouterr().out == f"{conf}: OK\n"


@pytest.mark.parametrize("which", ["users", "k.pem"])
def test_check_config_refuses_secrets_readable_by_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    conf = good_config(tmp_path)
    users_file = tmp_path / "conf" / "users"
    users_file.write_text(f"a:nt:{CLIENT_PASS_NT}\n")
    users_file.chmod(0o600)
    (tmp_path / "conf" / "k.pem").chmod(0o600)
    (tmp_path / "conf" / which).chmod(0o644)
    assert cli.main(["check-config", conf]) == 1
    path = tmp_path / "conf" / which
    assert capsys.readouterr().err == (
        f"{path}: mode 0644 lets other users read it; it must be 0600 (or 0640 with the "
        f"daemon's group): chmod 600 {path}\n"
    )


def test_check_config_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path, '[tunnel]\npool = "10.0.0.0/33"\n')
    assert cli.main(["check-config", conf]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"{conf}:2: tunnel.pool: 10.0.0.0/33 is not an IPv4 network\n"


def test_check_config_bad_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = good_config(tmp_path)
    users = tmp_path / "conf" / "users"
    users.write_text(f"a:nt:{CLIENT_PASS_NT}\nb:nt:xyz\n")
    users.chmod(0o600)
    assert cli.main(["check-config", conf]) == 1
    assert capsys.readouterr().err == f"{users}:2: the NT hash must be 32 hex digits\n"


def test_check_config_missing_or_mismatched_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = good_config(tmp_path)
    os.unlink(tmp_path / "conf" / "k.pem")
    assert cli.main(["check-config", conf]) == 1
    assert "k.pem: cannot read" in capsys.readouterr().err
    generate_self_signed(
        str(tmp_path / "o.pem"), str(tmp_path / "conf" / "k.pem"), common_name="o", sans=[]
    )
    assert cli.main(["check-config", conf]) == 1
    assert "does not match" in capsys.readouterr().err


def test_check_config_tls_false_needs_no_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(tmp_path, f'[server]\ntls = false\ncert_hash_sha256 = "{"ab" * 32}"\n')
    assert cli.main(["check-config", conf]) == 0
    assert capsys.readouterr().out == f"{conf}: OK\n"


def test_check_config_certificate_to_be_generated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(
        tmp_path,
        f'[server]\nstate_directory = "{tmp_path}/st"\n'
        f'certificate = "{tmp_path}/st/c"\nkey = "{tmp_path}/st/k"\n',
    )
    assert cli.main(["check-config", conf]) == 0
    assert "will be created" in capsys.readouterr().out


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "none.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err


# -- user --------------------------------------------------------------------------------


def test_user_add_password_flag_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = str(tmp_path / "users")
    assert (
        cli.main(["user", "add", "alice", "--password", "clientPass", "--users-file", users]) == 0
    )
    out = capsys.readouterr()
    assert "clientPass" not in out.out + out.err
    assert CLIENT_PASS_NT not in out.out + out.err.lower()
    assert load_users(users)["alice"].nt_hash.hex() == CLIENT_PASS_NT


def test_user_add_password_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = str(tmp_path / "users")
    stdin(monkeypatch, "clientPass\nignored\n")
    assert cli.main(["user", "add", "bob", "--password-stdin", "--users-file", users]) == 0
    assert load_users(users)["bob"].nt_hash.hex() == CLIENT_PASS_NT
    # not a tty and no flag: one line from stdin as well
    stdin(monkeypatch, "clientPass\r\n")
    assert cli.main(["user", "add", "carol", "--address", "10.77.0.9", "--users-file", users]) == 0
    carol = load_users(users)["carol"]
    assert carol.nt_hash.hex() == CLIENT_PASS_NT and str(carol.address) == "10.77.0.9"
    out = capsys.readouterr()
    assert "clientPass" not in out.out + out.err


def test_user_add_prompts_twice_on_a_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = str(tmp_path / "users")
    stdin(monkeypatch, "", tty=True)
    answers = iter(["clientPass", "clientPass", "one", "two"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert cli.main(["user", "add", "dave", "--users-file", users]) == 0
    assert len(prompts) == 2
    assert load_users(users)["dave"].nt_hash.hex() == CLIENT_PASS_NT
    assert cli.main(["user", "add", "erin", "--users-file", users]) == 1
    out = capsys.readouterr()
    assert "do not match" in out.err
    assert "clientPass" not in out.out + out.err and "one" not in out.err.split()
    assert "erin" not in load_users(users)


def test_user_add_nt_hash_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = str(tmp_path / "users")
    assert (
        cli.main(["user", "add", "a", "--nt-hash", CLIENT_PASS_NT.upper(), "--users-file", users])
        == 0
    )
    assert load_users(users)["a"].nt_hash.hex() == CLIENT_PASS_NT
    assert CLIENT_PASS_NT not in capsys.readouterr().out.lower()
    assert cli.main(["user", "add", "b", "--nt-hash", "123", "--users-file", users]) == 1
    assert "32 hex digits" in capsys.readouterr().err
    assert (
        cli.main(["user", "add", "b", "--password", "x", "--address", "x", "--users-file", users])
        == 1
    )
    assert "IPv4" in capsys.readouterr().err
    stdin(monkeypatch, "\n")
    assert cli.main(["user", "add", "b", "--password-stdin", "--users-file", users]) == 1
    assert "empty password" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["user", "add", "b", "--password", "x", "--nt-hash", CLIENT_PASS_NT])
    assert info.value.code == 2


def test_user_list_and_del(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = str(tmp_path / "users")
    cli.main(["user", "add", "a", "--password", "clientPass", "--users-file", users])
    cli.main(
        ["user", "add", "b", "--password", "x", "--address", "10.0.0.2", "--users-file", users]
    )
    capsys.readouterr()
    assert cli.main(["user", "list", "--users-file", users]) == 0
    out = capsys.readouterr().out
    assert out == "a\t-\t-\nb\t10.0.0.2\t-\n"
    assert cli.main(["user", "list", "--show-hash", "--users-file", users]) == 0
    assert f"a\t-\t-\t{CLIENT_PASS_NT}\n" in capsys.readouterr().out
    argv = ["user", "add", "c", "--password", "x", "--ipv6-prefix", "2001:db8:0:5::/64"]
    assert cli.main([*argv, "--users-file", users]) == 0
    assert "with address 2001:db8:0:5::/64" in capsys.readouterr().out
    assert cli.main(["user", "list", "--users-file", users]) == 0
    assert "c\t-\t2001:db8:0:5::/64\n" in capsys.readouterr().out
    argv = ["user", "add", "d", "--password", "x", "--ipv6-prefix", "2001:db8::/48"]
    assert cli.main([*argv, "--users-file", users]) != 0
    assert "a static IPv6 prefix is a /64" in capsys.readouterr().err
    assert cli.main(["user", "del", "c", "--users-file", users]) == 0
    assert cli.main(["user", "del", "a", "--users-file", users]) == 0
    assert cli.main(["user", "del", "a", "--users-file", users]) == 1
    assert "no user 'a'" in capsys.readouterr().err
    assert list(load_users(users)) == ["b"]


def test_user_file_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path, '[auth]\nusers_file = "u"\n')
    assert cli.main(["user", "add", "a", "--password", "p", "--config", conf]) == 0
    assert list(load_users(str(tmp_path / "conf" / "u"))) == ["a"]
    # no option at all: the embedded default (state directory)
    assert cli.main(["user", "add", "z", "--password", "p"]) == 0
    assert list(load_users(str(tmp_path / "state" / "users"))) == ["z"]
    assert cli.main(["user", "list"]) == 0
    assert capsys.readouterr().out.endswith("z\t-\t-\n")


def test_user_list_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["user", "list", "--users-file", str(tmp_path / "none")]) == 0
    assert "no users file" in capsys.readouterr().err


# -- cert --------------------------------------------------------------------------------


def test_cert_out_dir_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "tls"
    args = [
        "cert",
        "--out-dir",
        str(out_dir),
        "--cn",
        "vpn.example",
        "--san",
        "vpn.example",
        "10.0.0.1",
    ]
    assert cli.main(args) == 0
    fp = fingerprints(load_certificate_der(str(out_dir / "server.crt")))
    out = capsys.readouterr().out
    assert f"SHA-256 fingerprint: {fp['sha256']}" in out
    assert f"SHA-1 fingerprint: {fp['sha1']}" in out
    assert (out_dir / "server.key").stat().st_mode & 0o777 == 0o600
    # refuses to overwrite without --force
    assert cli.main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert cli.main([*args, "--force", "--days", "10"]) == 0
    assert fp["sha256"] not in capsys.readouterr().out
    assert cli.main(["cert", "--show", str(out_dir / "server.crt")]) == 0
    new = fingerprints(load_certificate_der(str(out_dir / "server.crt")))
    assert capsys.readouterr().out == (
        f"SHA-256 fingerprint: {new['sha256']}\nSHA-1 fingerprint: {new['sha1']}\n"
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
def test_cert_fingerprint_matches_openssl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c, k = str(tmp_path / "a.crt"), str(tmp_path / "a.key")
    assert cli.main(["cert", "--cert", c, "--key", k, "--key-type", "ec"]) == 0
    out = capsys.readouterr().out
    openssl = (
        subprocess.run(
            ["openssl", "x509", "-in", c, "-noout", "-fingerprint", "-sha256"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.split("=", 1)[1]
        .strip()
    )
    assert f"SHA-256 fingerprint: {openssl}\n" in out


def test_cert_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cert", "--cert", str(tmp_path / "c")]) == 1
    assert "go together" in capsys.readouterr().err
    assert cli.main(["cert", "--out-dir", str(tmp_path), "--cert", "c", "--key", "k"]) == 1
    assert cli.main(["cert", "--out-dir", str(tmp_path), "--san", "a b"]) == 1
    assert cli.main(["cert", "--show", str(tmp_path / "none")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cert_default_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cert"]) == 0
    assert (tmp_path / "state" / "tls" / "server.crt").exists()


# -- connect and usage -------------------------------------------------------------------


def test_connect_forwards_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    module: Any = types.ModuleType("sstpd.aio.client")
    module.main = fake_main
    monkeypatch.setitem(sys.modules, "sstpd.aio.client", module)
    assert cli.main(["connect", "--server", "x", "-u", "user", "rest"]) == 3
    assert seen == [["--server", "x", "-u", "user", "rest"]]


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_check_config_radius(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    radius = (
        '[server]\ntls = false\ncert_hash_sha256 = "' + "ab" * 32 + '"\n'
        '[auth]\nbackends = ["users", "radius"]\n'
        '[radius]\ndae_listen = "127.0.0.1:3799"\n'
        '[[radius.server]]\naddress = "192.0.2.1"\nsecret_file = "secret"\n'
        '[[radius.dae_client]]\naddress = "192.0.2.1"\nsecret = "d"\n'
    )
    conf = write_config(tmp_path, radius)
    assert cli.main(["check-config", conf]) == 1  # the secret file is missing
    err = capsys.readouterr().err
    assert err.startswith(f"{conf}:10: radius.server[0].secret_file: ")
    assert err.rstrip().endswith("secret: cannot read: No such file or directory")
    (tmp_path / "conf" / "secret").write_text("s3cr3t\n")
    assert cli.main(["check-config", conf]) == 0
    out = capsys.readouterr().out
    assert "authentication by users then radius; RADIUS: 1 authentication, 0 accounting" in out
    assert "Disconnect-Requests on 127.0.0.1:3799" in out and "s3cr3t" not in out


def test_check_config_acme_without_certificate_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "sstpd.toml"
    conf.write_text(
        f'[server]\ncertificate = "{tmp_path}/c.pem"\nkey = "{tmp_path}/k.pem"\n'
        '[acme]\nnames = ["vpn.example.test"]\n'
    )
    assert cli.main(["check-config", str(conf)]) == 0
    assert "will be created" in capsys.readouterr().out


def test_serve_with_acme_writes_a_placeholder_for_the_names(
    tmp_path: Path, server: FakeServer
) -> None:
    conf = tmp_path / "sstpd.toml"
    conf.write_text(
        f'[server]\ncertificate = "{tmp_path}/tls/c.pem"\nkey = "{tmp_path}/tls/k.pem"\n'
        f'state_directory = "{tmp_path}/state"\n'
        '[acme]\nnames = ["vpn.example.test", "vpn2.example.test"]\n'
    )
    assert cli.main(["serve", "--config", str(conf)]) == 0
    summary = certs.certificate_summary(str(tmp_path / "tls" / "c.pem"))
    assert summary["names"] == ["vpn.example.test", "vpn2.example.test"]
    assert summary["self_signed"] is True
    assert (tmp_path / "tls" / "k.pem").stat().st_mode & 0o777 == 0o600
