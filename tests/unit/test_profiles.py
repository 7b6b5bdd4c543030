"""Client profiles (sstpd/profiles): facts, golden files, and each file checked by what
reads it where that runs here (ini parser and ``nmcli --offline`` for NetworkManager,
``sh -n`` for the sstpc script) or structurally (PowerShell against the documented cmdlet
parameters, RouterOS against the documented properties). The sstpc script is executed for
real against the daemon in tests/realclient/test_profile_sstpc.py.
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sstpd import cli
from sstpd.config import Config, parse_config
from sstpd.errors import SstpdError
from sstpd.profiles import (
    PLATFORMS,
    ProfileError,
    client_facts,
    make_profile,
    mikrotik,
    networkmanager,
    sstpc,
    windows,
)
from sstpd.profiles.facts import validate_user
from sstpd.status.app import render

DATA = Path(__file__).parent / "data" / "profiles"
GOLDEN = DATA / "golden"
VERSION = "0.0-test"
SELF_SIGNED_SHA256 = (
    hashlib.sha256(
        base64.b64decode("".join((DATA / "selfsigned.crt").read_text().strip().splitlines()[1:-1]))
    )
    .digest()
    .hex(":")
    .upper()
)


def config(extra_server: str = "", extra_tunnel: str = "", cert: str = "selfsigned.crt") -> Config:
    return parse_config(
        f"""
[server]
certificate = "{DATA / cert}"
key = "{DATA / "none.key"}"
{extra_server}
[tunnel]
dns = ["10.77.0.53"]
routes = ["10.1.0.0/16", "192.168.5.0/24"]
domain = "corp.example"
{extra_tunnel}
[auth]
methods = ["mschapv2", "pap"]
""",
        str(DATA / "sstpd.toml"),
    )


def with_methods(c: Config, *methods: str) -> Config:
    # "eap-mschapv2" is not a config value yet (another change adds it): build it directly
    return dataclasses.replace(c, auth=dataclasses.replace(c.auth, methods=methods))


def without_routes(c: Config) -> Config:
    return dataclasses.replace(c, tunnel=dataclasses.replace(c.tunnel, routes=(), domain=""))


# --- facts -----------------------------------------------------------------------------


def test_facts_of_a_self_signed_certificate() -> None:
    f = client_facts(config())
    assert (f.name, f.port, f.target) == ("vpn.example.com", 443, "vpn.example.com:443")
    assert f.trust is not None and f.trust.self_signed_server
    assert f.trust.sha256 == f.server_sha256 == SELF_SIGNED_SHA256
    assert f.trust.pem.strip() == (DATA / "selfsigned.crt").read_text().strip()
    assert f.methods == ("mschapv2", "pap")
    assert f.routes == ("10.1.0.0/16", "192.168.5.0/24") and not f.full_tunnel
    assert (f.domain, f.dns) == ("corp.example", ("10.77.0.53",))


def test_public_name_and_port_win() -> None:
    f = client_facts(config('public_name = "203.0.113.10"\nport = 4433\npublic_port = 443'))
    assert (f.name, f.port) == ("203.0.113.10", 443)
    f = client_facts(config("port = 4433"))
    assert f.port == 4433


def test_ca_found_beside_the_certificate_and_verified() -> None:
    f = client_facts(config(cert="pki/server.crt"))
    assert f.name == "vpn1.example.com"  # the CN, which is among the SANs
    assert f.trust is not None and not f.trust.self_signed_server
    assert f.trust.subject == "CN=Example VPN CA"
    assert f.trust.sha256 != f.server_sha256


def test_ca_in_the_chain_file(tmp_path: Path) -> None:
    shutil.copy(DATA / "pki" / "server.crt", tmp_path / "server.crt")
    shutil.copy(DATA / "pki" / "ca.crt", tmp_path / "chain.crt")
    c = parse_config(
        f'[server]\ncertificate = "{tmp_path}/server.crt"\nchain = "chain.crt"\n',
        str(tmp_path / "sstpd.toml"),
    )
    f = client_facts(c)
    assert f.trust is not None and f.trust.subject == "CN=Example VPN CA"


def test_a_ca_that_did_not_sign_it_is_not_trusted(tmp_path: Path) -> None:
    # ca.crt beside a certificate it did not issue (the signature is checked, not the name)
    shutil.copy(DATA / "public.crt", tmp_path / "server.crt")
    shutil.copy(DATA / "pki" / "ca.crt", tmp_path / "ca.crt")
    c = parse_config(f'[server]\ncertificate = "{tmp_path}/server.crt"\n')
    f = client_facts(c)
    assert f.trust is None and f.name == "vpn.example.org"
    with pytest.raises(ProfileError, match="public CA"):
        make_profile(c, "certificate")
    # the Windows script then imports nothing
    text = windows.render(f, None, VERSION)
    assert "Import-Certificate" not in text and "public CA: nothing to import" in text


def test_configured_ca_certificate() -> None:
    c = config(f'ca_certificate = "{DATA / "pki" / "ca.crt"}"', cert="public.crt")
    f = client_facts(c)
    assert f.trust is not None and f.trust.subject == "CN=Example VPN CA"


def test_behind_an_offloader_the_name_must_be_configured() -> None:
    offload = f'tls = false\nport = 8080\ncert_hash_sha256 = "{"ab" * 32}"'
    with pytest.raises(ProfileError, match="public_name"):
        client_facts(config(offload))
    f = client_facts(config(offload + '\npublic_name = "vpn.example.net"'))
    assert (f.name, f.port, f.trust) == ("vpn.example.net", 443, None)
    assert f.server_sha256 == ":".join(["AB"] * 32)


def test_missing_certificate_is_an_error_naming_the_file() -> None:
    with pytest.raises(SstpdError, match=r"nothere\.crt: cannot read"):
        client_facts(config(cert="nothere.crt"))


@pytest.mark.parametrize("bad", ["a b", "a:b", 'x"y', "x'y", "a\\b", "$(id)", "#x", "a;b"])
def test_user_names_that_cannot_go_into_a_profile(bad: str) -> None:
    with pytest.raises(ProfileError):
        validate_user(bad)
    assert validate_user("DOMAIN.alice@example") == "DOMAIN.alice@example"
    assert validate_user("") is None


def test_no_method_the_client_knows() -> None:
    c = with_methods(config(), "eap-mschapv2")
    with pytest.raises(ProfileError, match="supports only mschapv2, pap"):
        make_profile(c, "mikrotik")


# --- golden files ------------------------------------------------------------------------

CASES = {
    "windows.ps1": lambda: windows.render(client_facts(config()), "alice", VERSION),
    "windows-eap-full-tunnel.ps1": lambda: windows.render(
        client_facts(without_routes(with_methods(config(), "eap-mschapv2", "mschapv2"))),
        None,
        VERSION,
    ),
    "mikrotik.rsc": lambda: mikrotik.render(client_facts(config()), "alice", VERSION),
    "networkmanager.nmconnection": lambda: networkmanager.render(
        client_facts(config()), "alice", VERSION
    ),
    "sstpc.sh": lambda: sstpc.render(client_facts(config()), "alice", VERSION),
    "sstpc-full-tunnel.sh": lambda: sstpc.render(
        client_facts(without_routes(config())), None, VERSION
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    text = CASES[name]()
    path = GOLDEN / name
    if os.environ.get("SSTPD_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(text.encode())
    assert text.encode() == path.read_bytes(), f"{name} differs from {path}"


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_no_secret_in_any_profile(platform: str, tmp_path: Path) -> None:
    from sstpd import certs, users

    certs.generate_self_signed(
        str(tmp_path / "s.crt"), str(tmp_path / "s.key"), common_name="vpn.example.com", sans=[]
    )
    users.add_user(str(tmp_path / "users"), "alice", password="Sup3r-secret", nt_hash=None)
    c = parse_config(
        '[server]\ncertificate = "s.crt"\nkey = "s.key"\n[auth]\nusers_file = "users"\n',
        str(tmp_path / "sstpd.toml"),
    )
    text = make_profile(c, platform, "alice").text
    nt_hash = users.load_users(str(tmp_path / "users"))["alice"].nt_hash.hex()
    key = (tmp_path / "s.key").read_text()
    for secret in ("Sup3r-secret", nt_hash, nt_hash.upper(), "PRIVATE KEY"):
        assert secret not in text
    assert "".join(key.splitlines()[1:3])[:40] not in text.replace("\n", "")


# --- Windows: the script against the documented cmdlet parameters --------------------------

# From Microsoft's documentation of each cmdlet (learn.microsoft.com/powershell/module/
# vpnclient/..., pki/import-certificate, ...): parameter -> "switch" (takes no value, or
# -Name:$bool) or "value". The common parameters are allowed everywhere.
COMMON = {"ErrorAction": "value", "Verbose": "switch", "WarningAction": "value"}
_VPN_COMMON = {
    "Name": "value",
    "ServerAddress": "value",
    "TunnelType": "value",
    "AllUserConnection": "switch",
    "L2tpPsk": "value",
    "EapConfigXmlStream": "value",
    "AuthenticationMethod": "value",
    "EncryptionLevel": "value",
    "UseWinlogonCredential": "switch",
    "ServerList": "value",
    "DnsSuffix": "value",
    "IdleDisconnectSeconds": "value",
    "MachineCertificateIssuerFilter": "value",
    "MachineCertificateEKUFilter": "value",
    "PassThru": "switch",
    "Force": "switch",
    "CimSession": "value",
    "ThrottleLimit": "value",
    "AsJob": "switch",
    "WhatIf": "switch",
    "Confirm": "switch",
}
CMDLETS: dict[str, dict[str, str]] = {
    # Add-VpnConnection: SplitTunneling and RememberCredential are switches
    "Add-VpnConnection": {
        **_VPN_COMMON,
        "SplitTunneling": "switch",
        "RememberCredential": "switch",
    },
    # Set-VpnConnection: the same two are [Boolean] and need a value
    "Set-VpnConnection": {
        **_VPN_COMMON,
        "SplitTunneling": "value",
        "RememberCredential": "value",
        "UseWinlogonCredential": "value",
    },
    "Get-VpnConnection": {
        "Name": "value",
        "AllUserConnection": "switch",
        "CimSession": "value",
        "ThrottleLimit": "value",
        "AsJob": "switch",
    },
    "Add-VpnConnectionRoute": {
        "ConnectionName": "value",
        "DestinationPrefix": "value",
        "RouteMetric": "value",
        "PassThru": "switch",
        "AllUserConnection": "switch",
        "CimSession": "value",
        "ThrottleLimit": "value",
        "AsJob": "switch",
        "WhatIf": "switch",
        "Confirm": "switch",
    },
    "Remove-VpnConnectionRoute": {
        "ConnectionName": "value",
        "DestinationPrefix": "value",
        "AllUserConnection": "switch",
        "PassThru": "switch",
        "CimSession": "value",
        "ThrottleLimit": "value",
        "AsJob": "switch",
        "WhatIf": "switch",
        "Confirm": "switch",
    },
    # New-EapConfiguration without parameters: the EapMsChapv2Auth (default) set
    "New-EapConfiguration": {
        "UseWinlogonCredential": "switch",
        "Tls": "switch",
        "Peap": "switch",
        "Ttls": "switch",
        "VerifyServerIdentity": "switch",
        "UserCertificate": "switch",
        "TunneledEapAuthMethod": "value",
        "TunneledNonEapAuthMethod": "value",
        "EnableNap": "switch",
        "FastReconnect": "value",
    },
    "Import-Certificate": {
        "FilePath": "value",
        "CertStoreLocation": "value",
        "Exportable": "switch",
        "WhatIf": "switch",
        "Confirm": "switch",
    },
    "Get-ChildItem": {"Path": "value", "LiteralPath": "value", "Recurse": "switch"},
    "Where-Object": {"FilterScript": "value"},
    "ForEach-Object": {"Process": "value"},
    "Write-Host": {"Object": "value", "NoNewline": "switch", "ForegroundColor": "value"},
    "Write-Warning": {"Message": "value"},
    "Read-Host": {"Prompt": "value", "AsSecureString": "switch"},
    "Join-Path": {"Path": "value", "ChildPath": "value"},
    "Remove-Item": {"Path": "value", "LiteralPath": "value", "Force": "switch"},
    "Out-Null": {"InputObject": "value"},
    "New-Object": {"TypeName": "value", "ArgumentList": "value", "Property": "value"},
}
# PowerShell operators that look like parameters
OPERATORS = {
    "not",
    "and",
    "or",
    "eq",
    "ne",
    "join",
    "replace",
    "notmatch",
    "match",
    "notcontains",
    "contains",
}


def ps_tokens(text: str) -> list[tuple[str, str, int]]:
    """A small PowerShell tokenizer: (kind, text, line) with kinds str, here, comment,
    word, param, var, op. Raises AssertionError on an unterminated string or here-string."""
    out: list[tuple[str, str, int]] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            out.append(("op", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif re.compile(r"@['\"]\r?\n").match(text, i):
            q = text[i + 1]
            end = re.compile(rf"\r?\n{q}@").search(text, i)
            assert end, f"line {line}: unterminated here-string"
            out.append(("here", text[i : end.end()], line))
            line += text.count("\n", i, end.end())
            i = end.end()
        elif c == "'":
            j = i + 1
            while True:
                j = text.find("'", j)
                assert j >= 0 and "\n" not in text[i:j], f"line {line}: unterminated '...'"
                if text.startswith("''", j):
                    j += 2
                    continue
                break
            out.append(("str", text[i : j + 1], line))
            i = j + 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "`" else 1
            assert j < n and "\n" not in text[i:j], f'line {line}: unterminated "..."'
            out.append(("str", text[i : j + 1], line))
            i = j + 1
        elif c == "-" and i + 1 < n and text[i + 1].isalpha():
            m = re.compile(r"-([A-Za-z]+)(:?)").match(text, i)
            assert m
            out.append(("param", m.group(0), line))
            i = m.end()
        elif c == "$":
            m = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z_][A-Za-z0-9_]*)?|\$_").match(text, i)
            assert m, f"line {line}: bad variable"
            out.append(("var", m.group(0), line))
            i = m.end()
        elif c.isalnum() or c in "_.:\\":
            m = re.compile(r"[A-Za-z0-9_.:\\]+(-[A-Za-z0-9_]+)*").match(text, i)
            assert m
            out.append(("word", m.group(0), line))
            i = m.end()
        else:
            out.append(("op", c, line))
            i += 1
    return out


def cmdlet_calls(text: str) -> list[tuple[str, list[tuple[str, bool]], int]]:
    """(cmdlet, [(parameter, has a value)], line) for every cmdlet call, after checking
    that (), {} and [] balance."""
    toks = ps_tokens(text)
    depth = {"(": 0, "{": 0, "[": 0}
    close = {")": "(", "}": "{", "]": "["}
    calls = []
    for k, (kind, tok, line) in enumerate(toks):
        if kind == "op" and tok in depth:
            depth[tok] += 1
        elif kind == "op" and tok in close:
            depth[close[tok]] -= 1
            assert depth[close[tok]] >= 0, f"line {line}: unbalanced {tok}"
        if kind != "word" or not re.fullmatch(r"[A-Z][a-z]+-[A-Z][A-Za-z]+", tok):
            continue
        params: list[tuple[str, bool]] = []
        level, j = 0, k + 1
        while j < len(toks):
            jk, jt, _ = toks[j]
            if jk == "op" and jt in "({":
                level += 1
            elif jk == "op" and jt in ")}":
                if level == 0:
                    break
                level -= 1
            elif jk == "op" and jt in "|;\n" and level == 0:
                break
            elif jk == "param" and level == 0:
                name = jt[1:].rstrip(":")
                if name.lower() in OPERATORS:
                    break
                nxt = toks[j + 1] if j + 1 < len(toks) else ("op", "\n", 0)
                valued = (
                    jt.endswith(":")
                    or nxt[0] in ("str", "var", "here", "word")
                    or (nxt[0] == "op" and nxt[1] in "(@")
                )
                params.append((name, valued))
            j += 1
        calls.append((tok, params, line))
    assert all(v == 0 for v in depth.values()), f"unbalanced brackets at the end: {depth}"
    return calls


def check_powershell(text: str) -> dict[str, list[list[tuple[str, bool]]]]:
    seen: dict[str, list[list[tuple[str, bool]]]] = {}
    for cmdlet, params, line in cmdlet_calls(text):
        assert cmdlet in CMDLETS, f"line {line}: {cmdlet} is not in the table of cmdlets"
        allowed = {**CMDLETS[cmdlet], **COMMON}
        for name, valued in params:
            assert name in allowed, f"line {line}: {cmdlet} has no parameter -{name}"
            if allowed[name] == "value":
                assert valued, f"line {line}: {cmdlet} -{name} needs a value"
        seen.setdefault(cmdlet, []).append(params)
    return seen


@pytest.mark.parametrize("name", ["windows.ps1", "windows-eap-full-tunnel.ps1"])
def test_powershell_uses_only_documented_parameters(name: str) -> None:
    text = CASES[name]()
    seen = check_powershell(text)
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    for cmdlet in ("Add-VpnConnection", "Set-VpnConnection"):
        (params,) = seen[cmdlet]
        names = dict(params)
        assert {"Name", "ServerAddress", "TunnelType", "AuthenticationMethod"} <= set(names)
        assert "-TunnelType Sstp" in text
    if name == "windows.ps1":
        assert "-AuthenticationMethod MSChapv2" in text and "New-EapConfiguration" not in text
        assert "-DnsSuffix 'corp.example'" in text
        assert "$Routes = @('10.1.0.0/16', '192.168.5.0/24')" in text
        assert "-SplitTunneling $true" in text  # Set: a Boolean
        assert re.search(r"Add-VpnConnection .* -SplitTunneling -Force", text)
        assert seen["Import-Certificate"] == [[("FilePath", True), ("CertStoreLocation", True)]]
        assert "Cert:\\LocalMachine\\Root" in text
        b64 = re.search(r"@'\r\n(.*?)\r\n'@", text, re.S)
        assert (
            b64
            and hashlib.sha256(base64.b64decode(b64.group(1))).digest().hex(":").upper()
            == SELF_SIGNED_SHA256
        )
        assert f"$Fingerprint = '{SELF_SIGNED_SHA256}'" in text
    else:
        assert "$Eap = New-EapConfiguration" in text
        assert "-AuthenticationMethod Eap -EapConfigXmlStream $Eap.EapConfigXmlStream" in text
        assert "-SplitTunneling $false" in text and "DnsSuffix" not in text
        assert "$Routes = @()" in text
    # elevation is checked before anything is changed
    assert text.index("IsInRole") < text.index(
        "Import-Certificate" if name == "windows.ps1" else "Add-VpnConnection"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "Add-VpnConnection -Name x -SplitTunnel",  # no such parameter
        "Set-VpnConnection -Name x -SplitTunneling",  # a Boolean without its value
        "Add-VpnConnection -Name 'x",  # unterminated string
        "if ($x) { Add-VpnConnection -Name x",  # unbalanced
        "Add-VpnConnexion -Name x",  # unknown cmdlet
    ],
)
def test_powershell_checker_catches_mistakes(bad: str) -> None:
    with pytest.raises(AssertionError):
        check_powershell(bad + "\r\n")


# --- MikroTik: commands and properties from the RouterOS documentation ----------------------

ROS_COMMANDS = {
    ("/interface sstp-client", "add"): {
        "name",
        "connect-to",
        "port",
        "user",
        "password",
        "authentication",
        "certificate",
        "verify-server-certificate",
        "verify-server-address-from-certificate",
        "pfs",
        "tls-version",
        "ciphers",
        "add-default-route",
        "default-route-distance",
        "profile",
        "keepalive-timeout",
        "max-mtu",
        "max-mru",
        "mrru",
        "http-proxy",
        "proxy-port",
        "dial-on-demand",
        "add-sni",
        "comment",
        "disabled",
    },
    ("/interface sstp-client", "remove"): set(),
    ("/certificate", "import"): {"file-name", "passphrase", "name", "trusted"},
    ("/certificate", "set"): {"name", "trusted"},
    ("/certificate", "remove"): set(),
    ("/file", "add"): {"name", "contents", "type"},
    ("/file", "remove"): set(),
    ("/ip route", "add"): {"dst-address", "gateway", "distance", "comment", "routing-table"},
    ("/ip route", "remove"): set(),
}
ROS_VALUES = {
    "authentication": {"pap", "chap", "mschap1", "mschap2"},
    "tls-version": {"any", "only-1.2", "only-1.3"},
    "pfs": {"yes", "no", "required"},
    "verify-server-certificate": {"yes", "no"},
    "verify-server-address-from-certificate": {"yes", "no"},
    "ciphers": {"aes256-sha", "aes256-gcm-sha384"},
}
_ROS_ARG = re.compile(r'\s+([a-z-]+)=("(?:[^"\\]|\\.)*"|[^\s"]+)')


def check_routeros(text: str) -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#") or line == ":delay 1s":
            continue
        m = re.match(r"(/[a-z /-]+?) (add|remove|set|import)(?= |$)", line)
        assert m, f"line {number}: not a known command: {line}"
        menu, cmd = m.group(1), m.group(2)
        assert (menu, cmd) in ROS_COMMANDS, f"line {number}: {menu} {cmd}"
        rest = line[m.end() :]
        find = re.match(r' \[find [a-z-]+="[^"]*"\]', rest)
        if cmd in ("remove", "set"):
            assert find, f"line {number}: {cmd} without [find ...]"
            rest = rest[find.end() :]
        args = {}
        pos = 0
        for a in _ROS_ARG.finditer(rest):
            assert a.start() == pos, f"line {number}: cannot parse {rest[pos:]!r}"
            args[a.group(1)] = a.group(2)
            pos = a.end()
        assert pos == len(rest), f"line {number}: trailing {rest[pos:]!r}"
        for key, value in args.items():
            assert key in ROS_COMMANDS[(menu, cmd)], f"line {number}: {menu} {cmd} has no {key}"
            if key in ROS_VALUES:
                assert set(value.split(",")) <= ROS_VALUES[key], f"line {number}: {key}={value}"
        out.append((menu, cmd, args))
    return out


def test_routeros_script_structure() -> None:
    cmds = check_routeros(CASES["mikrotik.rsc"]())
    (client,) = [a for menu, cmd, a in cmds if (menu, cmd) == ("/interface sstp-client", "add")]
    assert client["connect-to"] == "vpn.example.com" and client["port"] == "443"
    assert client["verify-server-certificate"] == "yes"
    assert client["verify-server-address-from-certificate"] == "yes"
    assert client["authentication"] == "mschap2,pap" and client["disabled"] == "yes"
    assert "password" not in client
    routes = [a["dst-address"] for menu, cmd, a in cmds if (menu, cmd) == ("/ip route", "add")]
    assert routes == ["10.1.0.0/16", "192.168.5.0/24"]
    # everything added is removed first: a second run replaces, never duplicates
    order = [(m, c) for m, c, _ in cmds]
    assert order.index(("/ip route", "remove")) < order.index(("/ip route", "add"))
    assert order.index(("/interface sstp-client", "remove")) < order.index(
        ("/interface sstp-client", "add")
    )
    (fileadd,) = [a for m, c, a in cmds if (m, c) == ("/file", "add")]
    pem = fileadd["contents"][1:-1].replace("\\n", "\n")
    assert pem.strip() == (DATA / "selfsigned.crt").read_text().strip()
    (cset,) = [a for m, c, a in cmds if (m, c) == ("/certificate", "set")]
    assert cset["name"] == '"sstpd-vpn.example.com"'
    fp = SELF_SIGNED_SHA256.replace(":", "").lower()
    assert f'[find fingerprint="{fp}"]' in CASES["mikrotik.rsc"]()


def test_routeros_tls_13_only() -> None:
    f = client_facts(config('tls_min_version = "1.3"'))
    assert "tls-version=only-1.3" in mikrotik.render(f, None, VERSION)
    check_routeros(mikrotik.render(f, None, VERSION))


# --- NetworkManager: ini parser, then nmcli itself -------------------------------------------


def test_nmconnection_parses_as_ini() -> None:
    text = CASES["networkmanager.nmconnection"]()
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(text)
    assert ini["connection"]["type"] == "vpn"
    vpn = ini["vpn"]
    assert vpn["service-type"] == "org.freedesktop.NetworkManager.sstp"
    assert vpn["gateway"] == "vpn.example.com" and vpn["user"] == "alice"
    assert vpn["password-flags"] == "2" and "password" not in vpn
    assert vpn["ca-cert"] == "/etc/NetworkManager/sstpd/vpn.example.com.crt"
    assert (vpn["refuse-mschapv2"], vpn["refuse-pap"], vpn["refuse-eap"]) == ("no", "no", "yes")
    # the plugin's data keys (nm-sstp-service.h, NM_SSTP_KEY_*)
    assert set(vpn) <= {
        "service-type",
        "gateway",
        "user",
        "ca-cert",
        "password-flags",
        "refuse-eap",
        "refuse-pap",
        "refuse-chap",
        "refuse-mschap",
        "refuse-mschapv2",
        "domain",
        "ignore-cert-warn",
        "require-mppe",
        "lcp-echo-interval",
        "lcp-echo-failure",
        "uuid",
    }
    ipv4 = ini["ipv4"]
    assert ipv4["never-default"] == "true"
    assert (ipv4["route1"], ipv4["route2"]) == ("10.1.0.0/16", "192.168.5.0/24")
    assert ipv4["dns-search"] == "corp.example;"
    # the certificate in the comment lines, extracted as the file's header says
    pem = "\n".join(line[3:] for line in text.splitlines() if line.startswith("#| "))
    assert pem.strip() == (DATA / "selfsigned.crt").read_text().strip()


def _nmcli_roundtrip(text: str) -> str:
    r = subprocess.run(
        ["nmcli", "--offline", "connection", "modify", "connection.autoconnect", "no"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.skipif(shutil.which("nmcli") is None, reason="nmcli missing (apt network-manager)")
def test_nmconnection_read_by_nmcli() -> None:
    text = CASES["networkmanager.nmconnection"]()
    out = _nmcli_roundtrip(text)
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(out)
    mine = configparser.ConfigParser(interpolation=None)
    mine.optionxform = str  # type: ignore[assignment,method-assign]
    mine.read_string(text)
    # nmcli kept every setting (an invalid route, say, would be dropped silently)
    for section in mine.sections():
        for key, value in mine[section].items():
            assert ini[section].get(key) == value, (section, key, value, out)
    # and it refuses a broken one, so the round trip proves something
    r = subprocess.run(
        ["nmcli", "--offline", "connection", "modify", "connection.autoconnect", "no"],
        input=text.replace("service-type=", "x-service-type="),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0


def test_sstpc_script_is_valid_sh() -> None:
    for name in ("sstpc.sh", "sstpc-full-tunnel.sh"):
        r = subprocess.run(["sh", "-n"], input=CASES[name](), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    full = CASES["sstpc-full-tunnel.sh"]()
    assert "--save-server-route" in full and "replacedefaultroute" in full
    split = CASES["sstpc.sh"]()
    assert "nodefaultroute" in split and "--save-server-route" not in split
    assert 'ip route replace 10.1.0.0/16 dev "$PPP_IFACE"' in split
    # pppd answers only what the server offers: MS-CHAPv2 and PAP here
    assert "refuse-eap" in split and "refuse-pap" not in split and "refuse-mschap-v2" not in split


# --- the command and the status app ----------------------------------------------------------


def test_cli_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "sstpd.toml"
    conf.write_text(f'[server]\ncertificate = "{DATA / "selfsigned.crt"}"\n')
    out = tmp_path / "vpn.ps1"
    assert cli.main(["profile", "windows", "--config", str(conf), "--out", str(out)]) == 0
    assert out.read_bytes() == make_profile(parse_config(conf.read_text()), "windows").text.encode()
    assert cli.main(["profile", "certificate", "--config", str(conf)]) == 0
    assert capsys.readouterr().out == (DATA / "selfsigned.crt").read_text()
    assert cli.main(["profile", "sstpc", "--config", str(conf), "--user", "a b"]) == 1
    assert "user 'a b'" in capsys.readouterr().err


def _app(
    path: str, qs: str = "", fail: Exception | None = None
) -> tuple[str, dict[str, str], bytes]:
    def profiles(platform: str, user: str | None) -> tuple[str, str, str]:
        if fail:
            raise fail
        p = make_profile(config(), platform, user)
        return p.filename, p.content_type, p.text

    def query(cmd: str) -> dict[str, object]:
        raise AssertionError("profiles do not ask the daemon")

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": qs}
    status, headers, body = render(env, query, 0.0, "t", profiles)  # type: ignore[arg-type]
    return status, dict(headers), body


def test_status_app_profiles() -> None:
    status, headers, body = _app("/profiles/")
    assert status == "200 OK" and all(f'href="{p}"' in body.decode() for p in PLATFORMS)
    status, headers, body = _app("/profiles/windows", "user=alice")
    assert status == "200 OK"
    assert headers["Content-Disposition"] == 'attachment; filename="vpn.example.com.ps1"'
    version = __import__("sstpd").__version__
    assert body == windows.render(client_facts(config()), "alice", version).encode()
    assert _app("/profiles/nope")[0] == "404 Not Found"
    assert _app("/profiles/sstpc", "user=a%20b")[0] == "400 Bad Request"
    status, _, body = _app("/profiles/sstpc", fail=ProfileError("set server.public_name"))
    assert status == "503 Service Unavailable" and b"public_name" in body


def test_each_client_answers_only_the_servers_methods() -> None:
    eap = client_facts(with_methods(config(), "eap-mschapv2", "mschapv2"))
    nm = networkmanager.render(eap, None, VERSION)
    assert "refuse-eap=no" in nm and "refuse-mschapv2=no" in nm and "refuse-pap=yes" in nm
    script = sstpc.render(eap, None, VERSION)
    assert "refuse-eap" not in script and "refuse-pap" in script
    assert "authentication=mschap2 " in mikrotik.render(eap, None, VERSION)
    pap = client_facts(with_methods(config(), "pap"))
    ps = windows.render(pap, None, VERSION)
    check_powershell(ps)
    # PAP has no MPPE keys: Windows wants the encryption level lowered for it
    assert "-AuthenticationMethod Pap -EncryptionLevel Optional" in ps
    assert "refuse-mschap-v2" in sstpc.render(pap, None, VERSION)
    assert "authentication=pap " in mikrotik.render(pap, None, VERSION)


def test_networkmanager_gateway_has_the_port_only_when_not_443() -> None:
    assert "gateway=vpn.example.com:443" not in CASES["networkmanager.nmconnection"]()
    f = client_facts(config("port = 4433"))
    assert "\ngateway=vpn.example.com:4433\n" in networkmanager.render(f, None, VERSION)


def test_a_default_route_in_routes_is_a_full_tunnel() -> None:
    c = config()
    routes = parse_config('[tunnel]\nroutes = ["10.1.0.0/16", "0.0.0.0/0"]\n').tunnel.routes
    f = client_facts(dataclasses.replace(c, tunnel=dataclasses.replace(c.tunnel, routes=routes)))
    assert f.full_tunnel and f.routes == ()
    assert "-SplitTunneling $false" in windows.render(f, None, VERSION)
