"""The sstpd role's pre-flight checks (its ``validate`` entry point: argument_specs, then
validate.yml) run by a real ansible-playbook against localhost, for the variables whose
checks need no node: ``sstpd__workers`` here. No containers, nothing changed (the
overlap check is off with ``sstpd__offline``); the full roles run in test_roles.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ansible import harness
from tests.ansible.harness import ROOT

pytestmark = pytest.mark.ansible


def validate(tmp_path: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "ansible.builtin.include_role": {"name": "sstpd", "tasks_from": "validate"},
                },
                {
                    "ansible.builtin.copy": {
                        "content": "{{ sstpd__published | to_json }}",
                        "dest": str(tmp_path / "published.json"),
                    }
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
    )
    extra = json.dumps({"sstpd__offline": True, **variables})
    return subprocess.run(
        [str(harness.VENV / "bin" / "ansible-playbook"), "play.yml", "-e", extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"sstpd__workers": 2}, None),
        ({"sstpd__workers": 0}, None),
        ({"sstpd__workers": 1, "sstpd__interface": "thirteen-char"}, None),
        ({"sstpd__workers": 65}, "sstpd__workers: 65 must be 0 (one per CPU) to 64"),
        ({"sstpd__workers": -1}, "sstpd__workers: -1 must be 0 (one per CPU) to 64"),
        ({"sstpd__workers": "many"}, "argument 'sstpd__workers' is of type str"),  # argument_specs
        (
            {"sstpd__workers": 2, "sstpd__interface": "thirteen-char"},
            "sstpd__interface (thirteen-char) at most 12 characters",
        ),
    ],
    ids=["two", "per-cpu", "one-long-name", "too-many", "negative", "not-int", "long-name"],
)
def test_workers_checked_before_anything_changes(
    tmp_path: Path, variables: dict[str, Any], message: str | None
) -> None:
    harness.controller_venv()
    r = validate(tmp_path, **variables)
    out = " ".join((r.stdout + r.stderr).split())
    if message is None:
        assert r.returncode == 0, out[-3000:]
        assert json.loads((tmp_path / "published.json").read_text())["interface"]
    else:
        assert r.returncode != 0
        assert message in out, out[-3000:]
        assert not (tmp_path / "published.json").exists()
