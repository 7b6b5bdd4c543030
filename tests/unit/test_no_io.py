"""The protocol core does no I/O and reads no clock: enforced on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTO = Path(__file__).resolve().parents[2] / "sstpd" / "proto"
FORBIDDEN = {"asyncio", "socket", "ssl", "os", "time", "secrets", "random", "select",
             "selectors", "subprocess", "threading", "datetime", "pathlib", "io", "logging"}
MODULES = sorted(PROTO.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"open", "__import__"}:
            roots.add(f"builtin {node.func.id}")  # type: ignore[attr-defined]
    return roots


def test_there_is_a_protocol_core() -> None:
    assert len(MODULES) >= 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROTO)))
def test_no_io_imports(path: Path) -> None:
    bad = {r for r in imported_roots(path) if r in FORBIDDEN or r.startswith("builtin ")}
    assert not bad, f"{path} imports {sorted(bad)}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    p = tmp_path / "bad.py"
    p.write_text("import time\nfrom os import path\nopen('x')\n")
    assert {"time", "os", "builtin open"} <= imported_roots(p)
