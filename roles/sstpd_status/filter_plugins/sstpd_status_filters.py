"""Jinja filters of the sstpd_status role (run on the controller).

* ``address | sstpd_status_address_problem``: "" when ``address`` is an IPv4 or IPv6
  address (0.0.0.0 and :: included), otherwise the reason it is not.
* ``address | sstpd_status_loopback``: True for 127.0.0.0/8 and ::1.
* ``address | sstpd_status_bind``: the host part of gunicorn's --bind (IPv6 in brackets).
* ``networks | sstpd_status_invalid``: the entries that are not addresses or networks.
"""

from __future__ import annotations

import ipaddress


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


def sstpd_status_address_problem(value: object) -> str:
    if _address(value) is None:
        return f"{value!r} is not an IPv4 or IPv6 address"
    return ""


def sstpd_status_loopback(value: object) -> bool:
    addr = _address(value)
    return addr is not None and addr.is_loopback


def sstpd_status_bind(value: object) -> str:
    addr = _address(value)
    if addr is None:
        return str(value)
    return f"[{addr}]" if addr.version == 6 else str(addr)


def sstpd_status_invalid(networks: object) -> list[str]:
    bad = []
    for item in networks or []:
        try:
            ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            bad.append(str(item))
    return bad


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "sstpd_status_address_problem": sstpd_status_address_problem,
            "sstpd_status_loopback": sstpd_status_loopback,
            "sstpd_status_bind": sstpd_status_bind,
            "sstpd_status_invalid": sstpd_status_invalid,
        }
