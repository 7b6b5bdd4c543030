"""sstpd_haproxy_server: one HAProxy server entry from a node's hostvars."""

from __future__ import annotations

from typing import Any


def sstpd_haproxy_server(hv: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": hv["inventory_hostname"],
        "address": hv.get("ansible_host", hv["inventory_hostname"]),
        "port": int(hv.get("sstpd__port", 443)),
        "check_port": int(hv.get("sstpd_status__port", 8080)),
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sstpd_haproxy_server": sstpd_haproxy_server}
