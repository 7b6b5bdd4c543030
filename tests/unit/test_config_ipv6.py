# ruff: noqa: E501  (expected error messages are quoted whole)
"""The IPv6 and split-tunnel keys of [tunnel]: values, every error with file and line,
and how a live reload treats them."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network, IPv6Address, IPv6Network

import pytest

from sstpd.aio.reload import RESTART_ONLY, live_config
from sstpd.config import Config, TunnelConfig, parse_config
from sstpd.errors import ConfigError

FILE = "/etc/sstpd/sstpd.toml"


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return str(info.value)


def tunnel(body: str) -> TunnelConfig:
    return parse_config(f"[tunnel]\n{body}", FILE).tunnel


def test_defaults_are_ipv4_only_without_routes() -> None:
    t = parse_config("", FILE).tunnel
    assert t.ipv6_pool is None and t.ipv6_address is None and t.ipv6_dns == ()
    assert t.routes == () and t.domain == ""


def test_full_dual_stack_settings() -> None:
    t = tunnel(
        'ipv6_pool = "2001:db8:100::/56"\n'
        'ipv6_address = "2001:db8::1"\n'
        'ipv6_dns = ["2001:db8::53", "2001:4860:4860::8888"]\n'
        'routes = ["10.0.0.0/8", "192.168.50.0/24", "172.16.5.9/32"]\n'
        'domain = "corp.example."\n'
    )
    assert t.ipv6_pool == IPv6Network("2001:db8:100::/56")
    assert t.ipv6_address == IPv6Address("2001:db8::1")
    assert t.ipv6_dns == (IPv6Address("2001:db8::53"), IPv6Address("2001:4860:4860::8888"))
    assert t.routes == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("192.168.50.0/24"),
        IPv4Network("172.16.5.9/32"),
    )
    assert t.domain == "corp.example"  # the root dot is implied


def test_empty_strings_mean_unset() -> None:
    t = tunnel('ipv6_pool = ""\nipv6_address = ""\nipv6_dns = []\nroutes = []\ndomain = ""\n')
    assert t == TunnelConfig()
    t = tunnel('ipv6_pool = "2001:db8::/56"\nipv6_address = ""\n')
    assert t.ipv6_address == IPv6Address("2001:db8::1")


def test_server_address_defaults_to_the_first_of_the_pool() -> None:
    t = tunnel('ipv6_pool = "fd00:5:6::/48"\n')
    assert t.ipv6_address == IPv6Address("fd00:5:6::1")


def test_default_route_and_single_label_domain_are_accepted() -> None:
    t = tunnel('routes = ["0.0.0.0/0"]\ndomain = "corp"\n')
    assert t.routes == (IPv4Network("0.0.0.0/0"),) and t.domain == "corp"


ERRORS = [
    ('ipv6_pool = "2001:db8::/129"', "tunnel.ipv6_pool: 2001:db8::/129 is not an IPv6 network"),
    ('ipv6_pool = "10.0.0.0/8"', "tunnel.ipv6_pool: 10.0.0.0/8 is not an IPv6 network"),
    ('ipv6_pool = "2001:db8::1/56"', "tunnel.ipv6_pool: 2001:db8::1/56 has host bits set"),
    (
        'ipv6_pool = "2001:db8::/80"',
        "tunnel.ipv6_pool: 2001:db8::/80 is longer than /64: each client needs a /64",
    ),
    (
        'ipv6_pool = "fe80::/56"',
        "tunnel.ipv6_pool: fe80::/56 is not a global or unique-local prefix",
    ),
    (
        'ipv6_pool = "ff00::/56"',
        "tunnel.ipv6_pool: ff00::/56 is not a global or unique-local prefix",
    ),
    ("ipv6_pool = 56", "tunnel.ipv6_pool: expected a string, got an integer"),
    (
        'ipv6_pool = "2001:db8:0:1::/64"',
        "tunnel.ipv6_pool: 2001:db8:0:1::/64 holds the server's 2001:db8:0:1::1: no /64 is left for clients",
    ),
    (
        'ipv6_address = "2001:db8::1"',
        "tunnel.ipv6_address: needs tunnel.ipv6_pool (IPv6 is off without it)",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_address = "fe80::1"',
        "tunnel.ipv6_address: fe80::1 cannot be a tunnel address",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_address = "::"',
        "tunnel.ipv6_address: :: cannot be a tunnel address",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_address = "10.0.0.1"',
        "tunnel.ipv6_address: '10.0.0.1' is not an IPv6 address",
    ),
    (
        'ipv6_pool = "2001:db8:0:7::/64"\nipv6_address = "2001:db8:0:7::1"',
        "tunnel.ipv6_address: 2001:db8:0:7::/64 holds the server's 2001:db8:0:7::1: no /64 is left for clients",
    ),
    (
        'ipv6_dns = ["2001:db8::53"]',
        "tunnel.ipv6_dns: needs tunnel.ipv6_pool (IPv6 is off without it)",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_dns = ["1.1.1.1"]',
        "tunnel.ipv6_dns: '1.1.1.1' is not an IPv6 address",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_dns = ["::1", "::2", "::3", "::4"]',
        "tunnel.ipv6_dns: at most 3 servers",
    ),
    (
        'ipv6_pool = "2001:db8::/56"\nipv6_dns = "::1"',
        "tunnel.ipv6_dns: expected an array of strings, got a string",
    ),
    ('routes = ["10.0.0.1/8"]', "tunnel.routes: 10.0.0.1/8 has host bits set"),
    (
        'routes = ["2001:db8::/32"]',
        "tunnel.routes: '2001:db8::/32' is not an IPv4 network (DHCP pushes IPv4 routes only)",
    ),
    ('routes = ["10.0.0.0/8", "10.0.0.0/8"]', "tunnel.routes: contains duplicates"),
    ('routes = ["10.0.0.0/8", "10.0.0.0/255.0.0.0"]', "tunnel.routes: 10.0.0.0/8 is listed twice"),
    ("routes = [8]", "tunnel.routes: expected an array of strings, found an integer"),
    (
        'domain = "corp..example"',
        "tunnel.domain: 'corp..example' is not a DNS domain name (labels of letters, digits and '-', at most 253 characters)",
    ),
    (
        'domain = "-corp.example"',
        "tunnel.domain: '-corp.example' is not a DNS domain name (labels of letters, digits and '-', at most 253 characters)",
    ),
    (
        'domain = "corp example"',
        "tunnel.domain: 'corp example' is not a DNS domain name (labels of letters, digits and '-', at most 253 characters)",
    ),
    (
        'domain = "bücher.example"',
        "tunnel.domain: 'bücher.example' is not a DNS domain name (labels of letters, digits and '-', at most 253 characters)",
    ),
    (
        'domain = "."',
        "tunnel.domain: '.' is not a DNS domain name (labels of letters, digits and '-', at most 253 characters)",
    ),
    ("ipv6_pol = 1", "tunnel.ipv6_pol: unknown key 'ipv6_pol' (did you mean 'ipv6_pool'?)"),
]


@pytest.mark.parametrize(("body", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_file_line_and_key(body: str, message: str) -> None:
    text = f'[server]\nport = 443\n\n[tunnel]\ninterface = "sstp0"\n{body}\n'
    line = 6 + body.count("\n")
    assert error(text) == f"{FILE}:{line}: {message}"


def test_long_label_and_long_domain() -> None:
    assert tunnel(f'domain = "{"a" * 63}.example"\n').domain == "a" * 63 + ".example"
    assert "not a DNS domain name" in error(f'[tunnel]\ndomain = "{"a" * 64}.example"\n')
    long_name = ".".join(["a" * 49] * 5)  # 249 characters
    assert tunnel(f'domain = "{long_name}"\n').domain == long_name
    assert "not a DNS domain name" in error(f'[tunnel]\ndomain = "{long_name}.abcd"\n')


def test_routes_must_fit_one_dhcp_option() -> None:
    # /32 routes take 9 bytes each (width, 4 octets, router): 28 fit in 255 bytes, 29 do not
    fits = ", ".join(f'"10.0.0.{i}/32"' for i in range(28))
    assert len(tunnel(f"routes = [{fits}]\n").routes) == 28
    too_many = ", ".join(f'"10.0.0.{i}/32"' for i in range(29))
    assert error(f"[tunnel]\nroutes = [{too_many}]\n") == (
        f"{FILE}:2: tunnel.routes: the routes take 261 bytes in DHCP option 121, at most 255 "
        "fit (use fewer or shorter prefixes)"
    )


# --------------------------------------------------------------------------- reload


def test_pool_and_server_address_need_a_restart() -> None:
    assert {"tunnel.ipv6_pool", "tunnel.ipv6_address"} <= RESTART_ONLY
    assert not {"tunnel.ipv6_dns", "tunnel.routes", "tunnel.domain"} & RESTART_ONLY
    running = parse_config('[tunnel]\nipv6_pool = "2001:db8:100::/56"\n', FILE)
    new = parse_config(
        "[tunnel]\n"
        'ipv6_pool = "2001:db8:200::/56"\n'
        'ipv6_address = "2001:db8::1"\n'
        'ipv6_dns = ["2001:db8::53"]\n'
        'routes = ["10.0.0.0/8"]\n'
        'domain = "corp.example"\n',
        FILE,
    )
    effective, changed, restart = live_config(running, new)
    assert changed == ["tunnel.ipv6_dns", "tunnel.routes", "tunnel.domain"]
    assert restart == [
        "tunnel.ipv6_pool: 2001:db8:100::/56 -> 2001:db8:200::/56",
        "tunnel.ipv6_address: 2001:db8:100::1 -> 2001:db8::1",
    ]
    assert effective.tunnel == replace(
        new.tunnel, ipv6_pool=running.tunnel.ipv6_pool, ipv6_address=running.tunnel.ipv6_address
    )
    assert live_config(Config(), Config()) == (Config(), [], [])


def test_ipv6_needs_an_mtu_of_at_least_1280() -> None:
    assert tunnel('ipv6_pool = "2001:db8:100::/56"\nmtu = 1280\n').mtu == 1280
    assert tunnel("mtu = 1000\n").mtu == 1000  # IPv4 only: as before
    assert "1000 is below 1280, the IPv6 minimum" in error(
        '[tunnel]\nipv6_pool = "2001:db8:100::/56"\nmtu = 1000\n'
    )
