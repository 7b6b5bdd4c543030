"""Every third-party import in sstpd/ is declared in pyproject.toml, and the optional ones
stay optional.

`tests/unit/test_programs.py` does this for the programs the tests run; this is the same
guard for Python packages. Two checks:

* each top-level third-party module imported anywhere under sstpd/ maps to a distribution
  listed in `[project] dependencies` or in an extra (a missing line means a user's
  `pip install sstpd` breaks on first use);
* with every extra's modules made unimportable, every sstpd module still imports except
  the ones named in OPTIONAL below (which must name the extra that provides them), so the
  daemon, `sstpctl` and `sstpd check-config` keep working on a core-only install.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sstpd"

# import name -> distribution name on PyPI
DISTRIBUTION = {
    "cryptography": "cryptography",
    "pyroute2": "pyroute2",
    "uvloop": "uvloop",
    "gunicorn": "gunicorn",
    "acme": "acme",
    "josepy": "josepy",
    "prometheus_client": "prometheus-client",
    "yaml": "pyyaml",
    "jinja2": "jinja2",
}

# modules allowed to need an extra at import time -> the extra that provides it
OPTIONAL = {
    "sstpd.acmeclient": "acme",
    "sstpd.aio.acme": "acme",  # imported by the server only when [acme] is enabled
    # the status web app (run under gunicorn from the same extra): /metrics is written by
    # prometheus-client; nothing outside sstpd.status imports it
    "sstpd.status": "status",
    "sstpd.status.app": "status",
    "sstpd.status.metrics": "status",
    "sstpd.status.page": "status",
}


def _pyproject() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    groups = {"": list(project.get("dependencies", []))}
    groups.update(project.get("optional-dependencies", {}))
    return {
        name: [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps]
        for name, deps in groups.items()
    }


def _third_party_imports() -> dict[str, set[str]]:
    """top-level module -> files importing it, for modules outside the stdlib and sstpd."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("sstpd", "__future__"):
                    continue
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts))
    return out


def test_every_third_party_import_is_declared() -> None:
    groups = _pyproject()
    declared = {dist for deps in groups.values() for dist in deps}
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        dist = DISTRIBUTION.get(module)
        if dist is None:
            problems.append(
                f"{module} (imported by {sorted(files)}): add it to DISTRIBUTION "
                "in this test and to pyproject.toml"
            )
        elif dist not in declared:
            problems.append(
                f"{module} (imported by {sorted(files)}): {dist} is in no "
                "dependency list of pyproject.toml"
            )
    assert not problems, "\n".join(problems)


def test_optional_modules_name_a_real_extra() -> None:
    groups = _pyproject()
    for module, extra in OPTIONAL.items():
        assert extra in groups, f"{module}: no extra [{extra}] in pyproject.toml"


def test_core_install_imports_everything_but_the_optional_modules() -> None:
    groups = _pyproject()
    core = set(groups[""])
    blocked = sorted(m for m, d in DISTRIBUTION.items() if d not in core)
    script = f"""
import importlib, json, sys
BLOCKED = {blocked!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked for the test: " + name)
        return None
sys.meta_path.insert(0, Block())
failed = {{}}
for name in {_modules()!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed[name] = str(exc)
print(json.dumps(failed))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    failed = json.loads(out.strip().splitlines()[-1])
    unexpected = {m: why for m, why in failed.items() if m not in OPTIONAL}
    assert not unexpected, (
        "these modules need an optional package at import time (import it lazily, or add "
        f"the module to OPTIONAL with its extra): {unexpected}"
    )
    # the entry points a core-only install runs must be among the importable ones
    for entry in ("sstpd.cli", "sstpd.ctl", "sstpd.config"):
        assert entry not in failed
