# ruff: noqa: E501  (expected error messages are quoted whole)
"""sstpd.config: defaults, every validation error (file, line, key), path resolution."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.config import (
    DEFAULT_CIPHERS,
    Config,
    default_config,
    load_config,
    parse_config,
)
from sstpd.errors import ConfigError

FILE = "/etc/sstpd/sstpd.toml"
SHA256_HEX = "ab" * 32
SHA1_HEX = "CD:" * 19 + "CD"


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return info.value


def test_defaults() -> None:
    c = parse_config("", FILE)
    assert c == Config()
    s = c.server
    assert s.listen == (IPv4Address("0.0.0.0"),)
    assert s.port == 443
    assert s.tls is True
    assert s.certificate == "/etc/sstpd/tls/server.crt"
    assert s.key == "/etc/sstpd/tls/server.key"
    assert s.chain is None
    assert s.cert_hash_sha256 is None and s.cert_hash_sha1 is None
    assert s.hash_protocols == ("sha256", "sha1")
    assert s.tls_min_version == "1.2"
    assert s.tls_transport == "sstpd"
    assert s.ciphers == DEFAULT_CIPHERS
    assert s.max_sessions == 1000
    assert s.handshake_timeout == 60.0 and s.hello_interval == 60.0
    assert s.state_directory == "/var/lib/sstpd"
    assert s.control_socket == "/run/sstpd/control.sock"
    t = c.tunnel
    assert t.interface == "sstp0"
    assert t.address == IPv4Address("10.77.0.1")
    assert t.pool == IPv4Network("10.77.0.0/24")
    assert t.dns == () and t.nbns == () and t.mtu == 1400
    assert t.offload is False
    assert t.read_moderation_bytes == 131072 and t.read_moderation_delay == 0.001
    assert c.auth.methods == ("eap-mschapv2", "mschapv2", "pap")
    assert c.auth.users_file == "/etc/sstpd/users"
    assert c.auth.retries == 0
    assert c.limits.session_buffer == 1048576
    assert c.log.level == "info"


def test_default_ciphers_cover_windows_and_mikrotik() -> None:
    for suite in ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"):
        assert suite in DEFAULT_CIPHERS.split(":")
    for suite in ("AES256-SHA", "AES256-GCM-SHA384"):  # MikroTik with pfs=no
        assert suite in DEFAULT_CIPHERS.split(":")


def test_default_config() -> None:
    c = default_config("/srv/state")
    assert c.server.listen == (IPv4Address("0.0.0.0"),) and c.server.port == 443
    assert c.server.certificate == "/srv/state/tls/server.crt"
    assert c.server.key == "/srv/state/tls/server.key"
    assert c.server.state_directory == "/srv/state"
    assert c.auth.users_file == "/srv/state/users"
    assert c.tunnel == Config().tunnel


def test_full_file() -> None:
    text = f"""
# comment
[server]
listen = ["192.0.2.1", "::"]
port = 8443
certificate = "tls/a.crt"
key = "/abs/a.key"
chain = "tls/chain.pem"
cert_hash_sha256 = "{SHA256_HEX.upper()}"
hash_protocols = ["sha256"]
tls_min_version = "1.3"
ciphers = "ECDHE-RSA-AES128-GCM-SHA256"
max_sessions = 10
handshake_timeout = 5
hello_interval = 30.5
state_directory = "state"
control_socket = "run/ctl.sock"

[tunnel]
interface = "vpn.0-a_b"
address = "192.168.50.1"
pool = "192.168.60.0/28"
dns = ["1.1.1.1", "8.8.8.8"]
nbns = ["192.168.50.2"]
mtu = 4087
offload = true
read_moderation_bytes = 0
read_moderation_delay = 0.005

[auth]
methods = ["pap"]
users_file = "../users"
retries = 5

[limits]
session_buffer = 65536

[log]
level = "debug"
"""
    c = parse_config(text, "/etc/sstpd/conf/sstpd.toml")
    s = c.server
    assert s.listen == (IPv4Address("192.0.2.1"), IPv6Address("::"))
    assert s.port == 8443
    assert s.certificate == "/etc/sstpd/conf/tls/a.crt"
    assert s.key == "/abs/a.key"
    assert s.chain == "/etc/sstpd/conf/tls/chain.pem"
    assert s.cert_hash_sha256 == bytes.fromhex(SHA256_HEX)
    assert s.hash_protocols == ("sha256",)
    assert s.tls_min_version == "1.3"
    assert s.ciphers == "ECDHE-RSA-AES128-GCM-SHA256"
    assert s.handshake_timeout == 5.0 and isinstance(s.handshake_timeout, float)
    assert s.hello_interval == 30.5
    assert s.state_directory == "/etc/sstpd/conf/state"
    assert s.control_socket == "/etc/sstpd/conf/run/ctl.sock"
    assert c.tunnel.interface == "vpn.0-a_b"
    assert c.tunnel.pool == IPv4Network("192.168.60.0/28")
    assert c.tunnel.dns == (IPv4Address("1.1.1.1"), IPv4Address("8.8.8.8"))
    assert c.tunnel.nbns == (IPv4Address("192.168.50.2"),)
    assert c.tunnel.mtu == 4087
    assert c.tunnel.offload is True
    assert c.tunnel.read_moderation_bytes == 0 and c.tunnel.read_moderation_delay == 0.005
    assert c.auth.methods == ("pap",)
    assert c.auth.users_file == "/etc/sstpd/users"
    assert c.auth.retries == 5
    assert c.limits.session_buffer == 65536
    assert c.log.level == "debug"


def test_relative_paths_from_load_config(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "sstpd.toml"
    conf.parent.mkdir()
    conf.write_text('[server]\ncertificate = "c.pem"\n[auth]\nusers_file = "../u"\n')
    c = load_config(str(conf))
    assert c.server.certificate == str(tmp_path / "etc" / "c.pem")
    assert c.auth.users_file == str(tmp_path / "u")


def test_relative_paths_of_a_string_use_the_current_directory() -> None:
    c = parse_config('[auth]\nusers_file = "u"\n')
    assert c.auth.users_file == os.path.join(os.getcwd(), "u")


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: cannot read")


def test_load_config_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_bytes(b"[server]\n\n# \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:3: not valid UTF-8"


def test_syntax_error_has_line() -> None:
    e = error("[server]\nport = 443\nlisten = [\n")
    assert e.file == FILE and e.line is not None
    assert str(e).startswith(f"{FILE}:")
    assert "TOML syntax error" in str(e)
    e = error("[server]\nport = \n")
    assert e.line == 2
    assert str(e).startswith(f"{FILE}:2: TOML syntax error: ")
    assert "(at line" not in str(e)


def test_tls_false_with_hash_offers_only_that_protocol() -> None:
    c = parse_config(f'[server]\ntls = false\ncert_hash_sha256 = "{SHA256_HEX}"\n')
    assert c.server.hash_protocols == ("sha256",)
    c = parse_config(
        f'[server]\ntls = false\ncert_hash_sha256 = "{SHA256_HEX}"\ncert_hash_sha1 = "{SHA1_HEX}"\n'
    )
    assert c.server.hash_protocols == ("sha256", "sha1")
    assert c.server.cert_hash_sha1 == b"\xcd" * 20
    c = parse_config(f'[server]\ntls = false\ncert_hash_sha1 = "{SHA1_HEX}"\n')
    assert c.server.hash_protocols == ("sha1",)


def test_address_outside_pool_and_small_pools() -> None:
    c = parse_config('[tunnel]\naddress = "10.1.0.1"\npool = "10.2.0.0/30"\n')
    assert c.tunnel.address == IPv4Address("10.1.0.1")
    parse_config('[tunnel]\naddress = "10.1.0.1"\npool = "10.2.0.7/32"\n')
    parse_config('[tunnel]\naddress = "10.2.0.6"\npool = "10.2.0.6/31"\n')


def test_inline_and_dotted_tables() -> None:
    assert parse_config("server = { port = 8443 }").server.port == 8443
    assert parse_config("server.port = 8443").server.port == 8443


# (toml text, expected message) -- every message names file, line and key.
ERRORS = [
    ("[servr]\n", f"{FILE}:1: servr: unknown section 'servr' (did you mean 'server'?)"),
    ("[server]\nprot = 4\n", f"{FILE}:2: server.prot: unknown key 'prot' (did you mean 'port'?)"),
    (
        "\nport = 443\n",
        f"{FILE}:2: port: unknown key 'port' (did you mean to put it under [server]?)",
    ),
    ("server = 1\n", f"{FILE}:1: server: expected a table [server], got an integer"),
    ("[server]\nport = 0\n", f"{FILE}:2: server.port: 0 is out of range 1-65535"),
    ("[server]\n\nport = 65536\n", f"{FILE}:3: server.port: 65536 is out of range 1-65535"),
    ("[server]\nport = '443'\n", f"{FILE}:2: server.port: expected an integer, got a string"),
    ("[server]\nport = true\n", f"{FILE}:2: server.port: expected an integer, got a boolean"),
    ("[server]\ntls = 1\n", f"{FILE}:2: server.tls: expected true or false, got an integer"),
    (
        '[server]\nlisten = "0.0.0.0"\n',
        f"{FILE}:2: server.listen: expected an array of strings, got a string",
    ),
    (
        "[server]\nlisten = [1]\n",
        f"{FILE}:2: server.listen: expected an array of strings, found an integer",
    ),
    ("[server]\nlisten = []\n", f"{FILE}:2: server.listen: must list at least one address"),
    (
        '[server]\nlisten = ["1.2.3.4", "1.2.3.4"]\n',
        f"{FILE}:2: server.listen: contains duplicates",
    ),
    (
        '[server]\nlisten = ["1.2.3.400"]\n',
        f"{FILE}:2: server.listen: '1.2.3.400' is not an IPv4 or IPv6 address",
    ),
    ('[server]\ncertificate = ""\n', f"{FILE}:2: server.certificate: must not be empty"),
    ('[server]\nkey = "a\\u0000b"\n', f"{FILE}:2: server.key: contains a NUL character"),
    (
        '[server]\ncert_hash_sha256 = "abcd"\n',
        f"{FILE}:2: server.cert_hash_sha256: must be 32 bytes in hex (64 hex digits, colons allowed)",
    ),
    (
        '[server]\ncert_hash_sha1 = "' + "zz" * 20 + '"\n',
        f"{FILE}:2: server.cert_hash_sha1: must be 20 bytes in hex (40 hex digits, colons allowed)",
    ),
    ("[server]\nhash_protocols = []\n", f"{FILE}:2: server.hash_protocols: must not be empty"),
    (
        '[server]\nhash_protocols = ["sha265"]\n',
        f"{FILE}:2: server.hash_protocols: 'sha265' is not one of sha256, sha1 (did you mean 'sha256'?)",
    ),
    (
        '[server]\nhash_protocols = ["sha1", "sha1"]\n',
        f"{FILE}:2: server.hash_protocols: contains duplicates",
    ),
    (
        '[server]\ntls_min_version = "1.1"\n',
        f"{FILE}:2: server.tls_min_version: '1.1' is not one of 1.2, 1.3",
    ),
    (
        '[server]\ntls_transport = "uvloop"\n',
        f"{FILE}:2: server.tls_transport: 'uvloop' is not one of sstpd, event-loop",
    ),
    (
        '[server]\nciphers = "NOPE"\n',
        f"{FILE}:2: server.ciphers: 'NOPE' selects no cipher OpenSSL knows",
    ),
    ("[server]\nmax_sessions = 0\n", f"{FILE}:2: server.max_sessions: 0 is out of range 1-1000000"),
    (
        "[server]\nhandshake_timeout = 0\n",
        f"{FILE}:2: server.handshake_timeout: 0.0 must be greater than 0 and at most 86400",
    ),
    (
        "[server]\nhello_interval = nan\n",
        f"{FILE}:2: server.hello_interval: nan must be greater than 0 and at most 86400",
    ),
    (
        '[server]\nhello_interval = "60"\n',
        f"{FILE}:2: server.hello_interval: expected a number of seconds, got a string",
    ),
    (
        "[server]\nstate_directory = 1979-05-27\n",
        f"{FILE}:2: server.state_directory: expected a string, got a date/time",
    ),
    (
        "[server]\ntls = false\n",
        f"{FILE}:2: server.tls: tls = false needs cert_hash_sha256 or cert_hash_sha1 (the hash of the certificate the TLS offloader presents)",
    ),
    (
        f'[server]\ntls = false\ncert_hash_sha1 = "{SHA1_HEX}"\nhash_protocols = ["sha256", "sha1"]\n',
        f"{FILE}:4: server.hash_protocols: sha256 is offered but cert_hash_sha256 is not set (needed with tls = false)",
    ),
    (
        '[tunnel]\ninterface = "sstp-interface-0"\n',
        f"{FILE}:2: tunnel.interface: 'sstp-interface-0' is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . -)",
    ),
    (
        '[tunnel]\ninterface = "a/b"\n',
        f"{FILE}:2: tunnel.interface: 'a/b' is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . -)",
    ),
    (
        '[tunnel]\ninterface = ".."\n',
        f"{FILE}:2: tunnel.interface: '..' is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . -)",
    ),
    ('[tunnel]\naddress = "::1"\n', f"{FILE}:2: tunnel.address: '::1' is not an IPv4 address"),
    (
        '[tunnel]\naddress = "0.0.0.0"\n',
        f"{FILE}:2: tunnel.address: 0.0.0.0 cannot be a tunnel address",
    ),
    (
        '[tunnel]\naddress = "10.77.0.255"\n',
        f"{FILE}:2: tunnel.address: 10.77.0.255 is the network or broadcast address of 10.77.0.0/24",
    ),
    (
        '[tunnel]\n\n\npool = "10.0.0.0/33"\n',
        f"{FILE}:4: tunnel.pool: 10.0.0.0/33 is not an IPv4 network",
    ),
    ('[tunnel]\npool = "10.0.0.1/24"\n', f"{FILE}:2: tunnel.pool: 10.0.0.1/24 has host bits set"),
    (
        '[tunnel]\naddress = "10.0.0.1"\npool = "10.0.0.1/32"\n',
        f"{FILE}:3: tunnel.pool: 10.0.0.1/32 has no usable client address",
    ),
    ('[tunnel]\ndns = ["1.1.1.1", "x"]\n', f"{FILE}:2: tunnel.dns: 'x' is not an IPv4 address"),
    (
        '[tunnel]\nnbns = ["1.1.1.1", "1.1.1.2", "1.1.1.3"]\n',
        f"{FILE}:2: tunnel.nbns: at most 2 servers can be pushed over IPCP",
    ),
    ("[tunnel]\nmtu = 575\n", f"{FILE}:2: tunnel.mtu: 575 is out of range 576-4087"),
    ("[tunnel]\nmtu = 4088\n", f"{FILE}:2: tunnel.mtu: 4088 is out of range 576-4087"),
    (
        '[tunnel]\noffload = "yes"\n',
        f"{FILE}:2: tunnel.offload: expected true or false, got a string",
    ),
    ("[tunnel]\noffload = 1\n", f"{FILE}:2: tunnel.offload: expected true or false, got an integer"),
    (
        "[tunnel]\nread_moderation_bytes = -1\n",
        f"{FILE}:2: tunnel.read_moderation_bytes: -1 is out of range 0-1048576",
    ),
    (
        "[tunnel]\nread_moderation_delay = 0\n",
        f"{FILE}:2: tunnel.read_moderation_delay: 0.0 must be greater than 0 and at most 0.1",
    ),
    (
        '[auth]\nmethods = ["chap"]\n',
        f"{FILE}:2: auth.methods: 'chap' is not one of eap-mschapv2, mschapv2, pap (did you mean 'mschapv2'?)",
    ),
    ("[auth]\nmethods = []\n", f"{FILE}:2: auth.methods: must not be empty"),
    ("[auth]\nretries = 6\n", f"{FILE}:2: auth.retries: 6 is out of range 0-5"),
    ("[auth]\nretries = -1\n", f"{FILE}:2: auth.retries: -1 is out of range 0-5"),
    (
        "[auth]\nuser_file = 'x'\n",
        f"{FILE}:2: auth.user_file: unknown key 'user_file' (did you mean 'users_file'?)",
    ),
    (
        "[limits]\nsession_buffer = 100\n",
        f"{FILE}:2: limits.session_buffer: 100 is out of range 65536-1073741824",
    ),
    (
        '[log]\nlevel = "verbose"\n',
        f"{FILE}:2: log.level: 'verbose' is not one of debug, info, warning, error",
    ),
    ("[[log]]\nlevel = 'info'\n", f"{FILE}:1: log: expected a table [log], got an array"),
    # the key is found after other sections, in a dotted key and in an inline table
    (
        "[log]\nlevel = 'info'\n[auth]\n[server]\n# x\nport = 0\n",
        f"{FILE}:6: server.port: 0 is out of range 1-65535",
    ),
    ("\n\nserver.port = 0\n", f"{FILE}:3: server.port: 0 is out of range 1-65535"),
    ("\nserver = { port = 0 }\n", f"{FILE}:2: server.port: 0 is out of range 1-65535"),
    ('[ "server" ]\nport = 0\n', f"{FILE}:2: server.port: 0 is out of range 1-65535"),
    ('[server]\n"port" = 0\n', f"{FILE}:2: server.port: 0 is out of range 1-65535"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    e = error(text)
    assert str(e) == message
    assert e.file == FILE
    assert e.line is not None
    assert e.key is not None and message.split(": ")[1] == e.key


def test_error_line_falls_back_to_the_section() -> None:
    # tls = false without hashes, tls written under the section header
    e = error('[tunnel]\nmtu = 1400\n[server]\ncertificate = "x"\ntls = false\n')
    assert e.line == 5 and e.key == "server.tls"


def test_default_config_is_valid_for_any_directory(tmp_path: Path) -> None:
    c = default_config(str(tmp_path / "rel" / ".." / "st"))
    assert c.server.state_directory == str(tmp_path / "st")


TOML_KEYS = st.sampled_from(
    [
        "server",
        "tunnel",
        "auth",
        "limits",
        "log",
        "port",
        "listen",
        "tls",
        "pool",
        "address",
        "mtu",
        "methods",
        "level",
        "cert_hash_sha1",
        "hash_protocols",
        "dns",
        "x",
    ]
)
TOML_VALUES = st.sampled_from(
    [
        "0",
        "443",
        "-1",
        "1e400",
        "nan",
        "inf",
        "true",
        "false",
        '""',
        '"a"',
        '"10.0.0.0/33"',
        '"10.0.0.1"',
        '["::"]',
        "[1, 2]",
        "[]",
        "{}",
        "{ a = 1 }",
        "1979-05-27",
        "12:00:00",
        '"\\u0000"',
        '["sha1"]',
        '"' + "ab" * 20 + '"',
    ]
)


@st.composite
def toml_like(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            lines.append(f"[{draw(TOML_KEYS)}]")
        elif kind == 1:
            lines.append(f"{draw(TOML_KEYS)}.{draw(TOML_KEYS)} = {draw(TOML_VALUES)}")
        else:
            lines.append(f"{draw(TOML_KEYS)} = {draw(TOML_VALUES)}")
    return "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), toml_like()))
def test_fuzz_only_config_error_escapes(text: str) -> None:
    try:
        parse_config(text, FILE)
    except ConfigError as e:
        assert e.file == FILE
        assert str(e).startswith(FILE)


# --- client-facing keys (issue 17: sstpd profile) -------------------------------------


def test_client_facing_keys() -> None:
    c = parse_config(
        '[server]\npublic_name = "VPN.example.com."\npublic_port = 4443\n'
        'ca_certificate = "/etc/sstpd/tls/ca.crt"\n'
        '[tunnel]\nroutes = ["10.1.0.0/16", "192.168.5.0/24"]\ndomain = "corp.example"\n',
        FILE,
    )
    assert c.server.public_name == "VPN.example.com"
    assert c.server.public_port == 4443
    assert c.server.ca_certificate == "/etc/sstpd/tls/ca.crt"
    assert c.tunnel.routes == (IPv4Network("10.1.0.0/16"), IPv4Network("192.168.5.0/24"))
    assert c.tunnel.domain == "corp.example"
    d = parse_config("", FILE)
    assert (d.server.public_name, d.server.public_port, d.server.ca_certificate) == ("", 0, None)
    assert (d.tunnel.routes, d.tunnel.domain) == ((), "")
    assert parse_config('[server]\npublic_name = "2001:db8::1"\n').server.public_name == "2001:db8::1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[server]\nport = 443\npublic_name = "vpn example"\n',
            f"{FILE}:3: server.public_name: 'vpn example' is neither a DNS name nor an IP address",
        ),
        (
            "[server]\npublic_port = 65536\n",
            f"{FILE}:2: server.public_port: 65536 is out of range 0-65535",
        ),
    ],
)
def test_client_facing_keys_errors(text: str, message: str) -> None:
    # (routes and domain are checked in test_config_ipv6.py)
    assert str(error(text)) == message
