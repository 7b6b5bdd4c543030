"""Jinja filters of the sstpd_firewall role (run on the controller).

* ``networks | sstpd_fw_family(4|6)``: the entries that are IPv4 (or IPv6) addresses or
  networks, normalised ("192.0.2.7" -> "192.0.2.7/32" stays an address; host bits of a
  network are cleared).
* ``networks | sstpd_fw_invalid``: the entries that are neither.

(Whether a client pool overlaps a network of the node is checked by the sstpd role,
which owns the pools: ``sstpd_overlaps``.)
"""

from __future__ import annotations

import ipaddress


def _parse(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return None


def sstpd_fw_family(networks: object, family: int) -> list[str]:
    out = []
    for item in networks or []:
        net = _parse(item)
        if net is not None and net.version == int(family) and str(net) not in out:
            out.append(str(net))
    return out


def sstpd_fw_invalid(networks: object) -> list[str]:
    return [str(item) for item in networks or [] if _parse(item) is None]


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "sstpd_fw_family": sstpd_fw_family,
            "sstpd_fw_invalid": sstpd_fw_invalid,
        }
