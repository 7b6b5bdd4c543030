"""Every document the code, tests and docs cite is in the repository a user clones.

Fails when a file under sstpd/, tests/, bench/, docs/ or README.md names a path outside
the repository (the maintainers' ``shared`` reference folder), a ``docs/`` file that does
not exist, a section (``docs/protocol/sstp.md §6.4``) that file has no heading for, or when
a Markdown link under docs/ or in README.md points at a missing file or anchor.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["sstpd", "tests", "bench", "docs", "README.md"]
SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".j2", ".txt", ".cfg", ".sh", ".json"}
# Written in two pieces so that this file does not trip its own check.
OUTSIDE = [re.escape("../" + "shared"), re.escape("shared" + "/docs")]
# ... and the names of the notes that lived there (now docs/protocol/, PERFORMANCE-NOTES.md)
OUTSIDE += [r"\bPROTOCOL" + r"(?:\.md|-NEXT)", r"\bPERFORMANCE" + r"\.md", r"\bSTYLE" + r"\.md"]
OUTSIDE_RE = re.compile("|".join(OUTSIDE))
DOC_REF_RE = re.compile(r"(?<![\w-])docs/[\w./-]*[\w/](?:\s+§(\d+(?:\.\d+)*))?")
SELF = Path(__file__).resolve()
MD_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def text_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for name in SCANNED:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and f.suffix in SUFFIXES and "__pycache__" not in f.parts
            ]
    return out


def headings(md: Path) -> list[str]:
    return [
        line.lstrip("#").strip()
        for line in md.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def problems(root: Path) -> list[str]:
    found: list[str] = []
    for path in text_files(root):
        if path.resolve() == SELF:  # its examples are wrong on purpose
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root)
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{lineno}"
            if OUTSIDE_RE.search(line):
                found.append(f"{where}: cites a path outside the repository: {line.strip()}")
            for m in DOC_REF_RE.finditer(line):
                token = re.split(r"[\s\"'(<`]", line[: m.start()])[-1]
                if "://" in token:  # part of a URL
                    continue
                target = root / m.group(0).split()[0]
                if not target.exists():
                    found.append(f"{where}: {m.group(0).split()[0]} does not exist")
                elif m.group(1) and target.suffix == ".md":
                    section = m.group(1)
                    if not any(re.match(rf"{re.escape(section)}[. ]", h) for h in headings(target)):
                        found.append(f"{where}: {target.relative_to(root)} has no §{section}")
            if path.suffix == ".md":
                for link in MD_LINK_RE.findall(line):
                    found += check_md_link(root, path, link, where)
    return found


def check_md_link(root: Path, md: Path, link: str, where: str) -> list[str]:
    if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
        return []
    file_part, _, anchor = link.partition("#")
    target = (md.parent / file_part).resolve() if file_part else md
    if not target.is_relative_to(root):
        return [f"{where}: link {link} leaves the repository"]
    if not target.exists():
        return [f"{where}: link {link}: {file_part} does not exist"]
    if anchor and target.suffix == ".md" and anchor not in {slug(h) for h in headings(target)}:
        return [f"{where}: link {link}: no heading with anchor #{anchor}"]
    return []


def test_the_scan_covers_code_tests_and_docs() -> None:
    files = {str(p.relative_to(ROOT)) for p in text_files(ROOT)}
    assert "README.md" in files
    assert "sstpd/proto/mschap.py" in files
    assert "docs/protocol/sstp.md" in files
    assert any(f.startswith("bench/") for f in files)
    assert any(f.startswith("tests/unit/") for f in files)


def test_no_reference_leaves_the_repository_or_points_nowhere() -> None:
    found = problems(ROOT)
    assert not found, "\n".join(found)


def test_slug_matches_github() -> None:
    assert slug("6.1 HLAK, 32 bytes (§3.2.5.2.2, §3.2.5.2.4)") == "61-hlak-32-bytes-32522-32524"
    assert slug("MS-CHAPv2: DES from cryptography") == "ms-chapv2-des-from-cryptography"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("see ../" + "shared/docs/X.md\n", "outside the repository"),
        ("# the notes in " + "shared" + "/docs\n", "outside the repository"),
        ("(RFC 8737, PROTOCOL" + "-NEXT §5)\n", "outside the repository"),
        ("as in PROTOCOL" + ".md §9.2\n", "outside the repository"),
        ("see PERFORMANCE" + ".md\n", "outside the repository"),
        ("see docs/NOPE.md\n", "docs/NOPE.md does not exist"),
        ("see ../docs/PERFORMANCE.md\n", "docs/PERFORMANCE.md does not exist"),
        ("see docs/a.md §9\n", "docs/a.md has no §9"),
        ("[x](docs/missing.md)\n", "docs/missing.md does not exist"),
        ("[x](docs/a.md#nope)\n", "no heading with anchor #nope"),
        ("[x](../../etc/passwd)\n", "leaves the repository"),
    ],
)
def test_checker_catches(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## 1. One\n\n### 1.2 Two\n")
    (tmp_path / "README.md").write_text(content)
    found = problems(tmp_path)
    assert any(expected in f for f in found), found


def test_checker_accepts_good_references(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## 1. One\n\n### 1.2 Two\n")
    (tmp_path / "README.md").write_text(
        "see docs/a.md §1 and docs/a.md §1.2, [a](docs/a.md#12-two), "
        "[web](https://example.org/x), https://example.org/docs/nope.md, docs/ itself\n"
    )
    assert problems(tmp_path) == []


WHOLE = {"status", "profiles"}  # packages DESIGN.md describes in one entry


def test_design_names_every_module() -> None:
    """docs/DESIGN.md's layout has a line for every module of the package (a package
    described as a whole, such as ``sstpd/status/``, covers its modules)."""
    design = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted((ROOT / "sstpd").rglob("*.py")):
        rel = path.relative_to(ROOT / "sstpd")
        if path.name == "__init__.py":
            continue
        named = re.search(rf"(^|[\s/]){re.escape(path.name)}(\s|:|$)", design, re.MULTILINE)
        if not (named or rel.parts[0] in WHOLE):
            missing.append(str(rel))
    assert missing == [], f"docs/DESIGN.md does not name: {missing}"
