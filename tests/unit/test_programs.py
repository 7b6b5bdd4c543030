"""tests/programs.txt knows every program the tests run on this machine.

tests/run installs the packages of that list and checks its programs before pytest starts,
so a test that runs a program missing from the list would fail only on a fresh machine.
This scans the test sources (AST) for the programs they run:

- the first element of a command list given to ``subprocess.run/Popen/check_output/...``
  (a literal list, or a variable assigned a literal list in the same module);
- the first argument of the command helpers ``sh(*cmd)``/``_sh(*cmd)``, the second of
  ``<netns or topology>.run/popen(ns, *cmd)`` and ``ns_exec(ns, *cmd)``;
- inside those, the program after ``ip netns exec NS`` and after a ``*_in(ns)`` prefix;
- names given to ``shutil.which`` (literals, or loop variables over a literal tuple).

Commands run inside the qemu guest (``guest.run``) or an nspawn container (``node.run``)
use those machines' own packages. ``sys.executable`` and other non-literal programs are the
test venv's Python or paths in this checkout.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS_TXT = ROOT / "tests" / "programs.txt"

SUBPROCESS = {"run", "Popen", "check_output", "check_call", "call"}
ARGV_HELPERS = {"sh": 0, "_sh": 0}  # sh(*cmd)
NS_HELPERS = {"run": 1, "popen": 1, "ns_exec": 1}  # net.run(ns, *cmd), ns_exec(ns, *cmd)
# .run() in the qemu guest or an nspawn container, and asyncio.run (not a command)
ELSEWHERE = {"guest", "node", "nodes", "asyncio"}


def listed() -> dict[str, str]:
    """program -> package from tests/programs.txt (the same parsing as tests/run)."""
    out: dict[str, str] = {}
    for n, line in enumerate(PROGRAMS_TXT.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        assert len(fields) == 2, f"programs.txt:{n}: want '<program> <package>': {line!r}"
        prog, pkg = fields
        assert prog == "-" or prog not in out, f"programs.txt:{n}: {prog} listed twice"
        out[prog] = pkg
    return out


def _const(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _name(func: ast.AST) -> tuple[str | None, str | None]:
    """(receiver, name) of a call's function: subprocess.run -> ("subprocess", "run")."""
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        recv = func.value
        while isinstance(recv, ast.Subscript):  # lab.nodes["node1"].run -> "nodes"
            recv = recv.value
        if isinstance(recv, ast.Attribute):  # self.net.popen -> "net"
            return recv.attr, func.attr
        return (recv.id if isinstance(recv, ast.Name) else None), func.attr
    return None, None


class _Module:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.lists: dict[str, list[list[ast.expr]]] = {}  # cmd = [...]
        self.loops: dict[str, list[str]] = {}  # for tool in ("a", "b")
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.lists.setdefault(t.id, []).append(node.value.elts)
            targets: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(node, ast.For):
                targets.append((node.target, node.iter))
            if isinstance(node, ast.comprehension):
                targets.append((node.target, node.iter))
            for target, it in targets:
                if isinstance(target, ast.Name) and isinstance(it, ast.List | ast.Tuple):
                    names = [c for c in map(_const, it.elts) if c is not None]
                    self.loops.setdefault(target.id, []).extend(names)

    def commands(self, args: list[ast.expr]) -> Iterator[list[ast.expr]]:
        """Command element lists: a literal list, or a variable's literal lists."""
        if len(args) == 1 and isinstance(args[0], ast.List | ast.Tuple):
            yield list(args[0].elts)
        elif len(args) == 1 and isinstance(args[0], ast.Name):
            yield from self.lists.get(args[0].id, [])
        elif len(args) == 1 and isinstance(args[0], ast.Starred):
            inner = args[0].value
            if isinstance(inner, ast.Name):
                yield from self.lists.get(inner.id, [])
            else:
                yield args
        else:
            yield args

    def programs(self, elts: list[ast.expr], seen: frozenset[str] = frozenset()) -> Iterator[str]:
        while elts and isinstance(elts[0], ast.Starred):
            inner = elts[0].value
            if isinstance(inner, ast.Call) and _name(inner.func)[1] == "_in":
                elts = elts[1:]  # [*_in(ns), *cmd]: the namespace prefix
            elif isinstance(inner, ast.Name):
                if inner.id not in seen:  # cmd = ["ip", "netns", "exec", ns, *cmd]
                    for lst in self.lists.get(inner.id, []):
                        yield from self.programs([*lst, *elts[1:]], seen | {inner.id})
                return
            else:
                yield from self.scan_call(inner)
                return
        if not elts:
            return
        first = _const(elts[0])
        if first is None:
            return
        yield first
        if first == "ip" and [_const(e) for e in elts[1:3]] == ["netns", "exec"]:
            yield from self.programs(elts[4:], seen)

    def scan_call(self, node: ast.AST) -> Iterator[str]:
        if not isinstance(node, ast.Call):
            return
        recv, name = _name(node.func)
        if recv == "shutil" and name == "which" and node.args:
            arg = node.args[0]
            c = _const(arg)
            if c is not None:
                yield c
            elif isinstance(arg, ast.Name):
                yield from self.loops.get(arg.id, [])
        elif recv == "subprocess" and name in SUBPROCESS and node.args:
            for elts in self.commands(node.args[:1]):
                yield from self.programs(elts)
        elif recv is None and name in ARGV_HELPERS:
            for elts in self.commands(node.args[ARGV_HELPERS[name] :]):
                yield from self.programs(elts)
        elif name in NS_HELPERS and recv not in ELSEWHERE and recv != "subprocess":
            args = node.args[NS_HELPERS[name] :]
            if args:
                for elts in self.commands(args):
                    yield from self.programs(elts)


def programs_in(source: str) -> set[str]:
    mod = _Module(ast.parse(source))
    return {p for node in ast.walk(mod.tree) for p in mod.scan_call(node)}


def _test_files() -> Iterable[Path]:
    return sorted((ROOT / "tests").rglob("*.py"))


def test_every_program_a_test_runs_is_in_programs_txt() -> None:
    known = listed()
    unlisted = {}
    for path in _test_files():
        for prog in programs_in(path.read_text()):
            if prog not in known:
                unlisted.setdefault(prog, []).append(str(path.relative_to(ROOT)))
    assert unlisted == {}, (
        "tests run programs that tests/programs.txt does not list (add '<program> <package>'"
        f" lines, so that tests/run installs them): {unlisted}"
    )


def test_the_scan_finds_the_known_programs() -> None:
    """The scan itself finds what the suite is known to run (a scan finding nothing passes)."""
    found = set().union(*(programs_in(p.read_text()) for p in _test_files()))
    assert found >= {"ip", "haproxy", "nginx", "nft", "socat", "qemu-img", "systemd-nspawn"}
    assert found >= {"chromium", "openssl", "mmdebstrap", "ss", "sysctl", "zstd", "ssh-keygen"}


def test_the_scan_understands_each_way_of_running_a_program() -> None:
    src = """
import shutil, subprocess, sys
subprocess.run(["a1", "x"])
subprocess.Popen(["ip", "netns", "exec", ns, "a2", "-d"])
subprocess.check_output(("a3",))
cmd = ["a4", "-x"]
subprocess.run(cmd)
sh("a5", "y")
_sh(*cmd)
sh("ip", "netns", "exec", topo.ns("lb"), "a6")
net.run(net.srv, "a7", check=False)
topo.run("edge", "a8")
net.popen(ns, sys.executable, "-m", "x")
subprocess.Popen([*_in(ns), "a9"])
sh(*ns_exec(node.ns, "a10", "-H"))
shutil.which("a11")
for tool in ("a12", "a13"):
    shutil.which(tool)
[b for b in ("a14",) if shutil.which(b) is None]
guest.run("not-on-host")
node.run("not-on-host-either", "x")
lab.nodes["node1"].run("nft", "list")
subprocess.run([sys.executable, "-m", "sstpd"])
"""
    want = {f"a{i}" for i in range(1, 15)} | {"ip"}
    assert programs_in(src) == want


def test_every_listed_program_has_a_package() -> None:
    for prog, pkg in listed().items():
        assert pkg and not pkg.startswith("#"), prog
