"""sstpd_haproxy_server: one HAProxy server entry from a node's hostvars.

The node's ports are the ones its roles publish: ``sstpd__published.port`` (the daemon's
listener) and ``sstpd_status__published.port`` (the status app, health-checked at
/healthz). balancer.yml's first play publishes them; a node without them is an error,
never a guessed default.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def sstpd_haproxy_server(hv: dict[str, Any]) -> dict[str, Any]:
    name = hv["inventory_hostname"]
    daemon, status = hv.get("sstpd__published"), hv.get("sstpd_status__published")
    if not isinstance(daemon, dict) or not isinstance(status, dict):
        raise AnsibleFilterError(
            f"node {name}: sstpd__published / sstpd_status__published are not set; the "
            "first play of balancer.yml publishes them (do not --limit the nodes away)"
        )
    if not status.get("enabled", False):
        raise AnsibleFilterError(
            f"node {name}: sstpd_status__enabled is false; the balancer health-checks the "
            "status app's /healthz"
        )
    return {
        "name": name,
        "address": hv.get("ansible_host", name),
        "port": int(daemon["port"]),
        "check_port": int(status["port"]),
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sstpd_haproxy_server": sstpd_haproxy_server}
