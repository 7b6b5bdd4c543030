"""Jinja filters of the sstpd role (run on the controller).

* ``password | sstpd_nt_hash``: the NT hash (MD4 of the UTF-16LE password) as 32 hex
  digits, what the users file stores. Computed in memory on the controller, so the
  password (from Ansible Vault, say) is never written to any file. The hash is the
  package's own (``sstpd.proto.mschap.nt_password_hash``), from the checkout these roles
  live in.
* ``value | sstpd_toml``: a TOML value (string, integer, float, boolean or list of them).
* ``pool | sstpd_overlaps(networks)``: the entries of ``networks`` ("address/prefix",
  "address/netmask", or either followed by a note such as " (eth0)") whose network
  overlaps the IPv4 or IPv6 network ``pool``. The only pool-overlap check of the roles.
* ``value | sstpd_ip_problem(4|6, 'address'|'network')``: "" or why it is not one.
* ``value | sstpd_is_ip``: an IPv4 or IPv6 address.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import json
import math
import sys
from pathlib import Path
from types import ModuleType

from ansible.errors import AnsibleFilterError

# roles/sstpd/filter_plugins/ -> the checkout (playbooks/roles is a symlink: resolved)
CHECKOUT = Path(__file__).resolve().parents[3]


def checkout_module(name: str) -> ModuleType:
    """``sstpd.<...>`` imported from the checkout the roles belong to.

    Only the ``sstpd`` package is made importable (not the checkout's other top-level
    directories); an ``sstpd`` already imported in this process is used as it is. Without
    the checkout, an ``sstpd`` installed on the controller is tried."""
    init = CHECKOUT / "sstpd" / "__init__.py"
    if "sstpd" not in sys.modules and init.is_file():
        spec = importlib.util.spec_from_file_location(
            "sstpd", init, submodule_search_locations=[str(init.parent)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["sstpd"] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules["sstpd"]
            raise
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise AnsibleFilterError(
            f"{name} is neither in the checkout {CHECKOUT} nor installed on the controller: {e}"
        ) from e


def sstpd_nt_hash(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("sstpd_nt_hash: the password must be a non-empty string")
    mschap = checkout_module("sstpd.proto.mschap")
    return str(mschap.nt_password_hash(password).hex())


def sstpd_toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnsibleFilterError(f"sstpd_toml: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sstpd_toml(v) for v in value) + "]"
    raise AnsibleFilterError(f"sstpd_toml: cannot write {type(value).__name__} {value!r}")


def sstpd_overlaps(pool: object, networks: object) -> list[str]:
    try:
        net = ipaddress.ip_network(str(pool), strict=False)
    except ValueError as e:
        raise AnsibleFilterError(f"sstpd_overlaps: {pool!r} is not a network: {e}") from e
    found = []
    for other in networks or []:
        text = str(other)
        try:
            candidate = ipaddress.ip_interface(text.split(" ", 1)[0]).network
        except ValueError:
            continue
        if candidate.version == net.version and candidate.overlaps(net):
            found.append(text)
    return found


def sstpd_ip_problem(value: object, version: int = 4, kind: str = "address") -> str:
    """ "" when ``value`` is an IPv``version`` address (kind="address") or network
    ("network", no host bits set), otherwise the reason it is not."""
    cls: type
    if int(version) == 6:
        cls = ipaddress.IPv6Network if kind == "network" else ipaddress.IPv6Address
    else:
        cls = ipaddress.IPv4Network if kind == "network" else ipaddress.IPv4Address
    try:
        cls(str(value))
    except ValueError as e:
        return f"{value!r} is not an IPv{int(version)} {kind}: {e}"
    return ""


def sstpd_is_ip(value: object) -> bool:
    """True when ``value`` is an IPv4 or IPv6 address (RADIUS servers are named by address)."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "sstpd_nt_hash": sstpd_nt_hash,
            "sstpd_toml": sstpd_toml,
            "sstpd_overlaps": sstpd_overlaps,
            "sstpd_ip_problem": sstpd_ip_problem,
            "sstpd_is_ip": sstpd_is_ip,
        }
