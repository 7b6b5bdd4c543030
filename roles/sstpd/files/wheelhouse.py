"""Build the sstpd wheel and fetch its dependencies for a node, on the controller.

    python wheelhouse.py SOURCE_DIR OUT_DIR PYTHON_VERSION ARCH [--extras=a,b] [PIP_ARGS...]

OUT_DIR ends up holding sstpd-*.whl and binary wheels of every dependency for CPython
PYTHON_VERSION (e.g. 3.11) on manylinux ARCH, so the node installs with
``pip install --no-index`` and needs no access to a package index (``--extras``: the
dependencies of these optional groups too, e.g. ``status``). The wheel is built
from a copy of the source (the checkout is not written to) with SOURCE_DATE_EPOCH fixed,
so the same source gives a byte-identical wheel and copying it again changes nothing.
A digest of the source and of the request is kept in OUT_DIR: unchanged input, no work
(and no network). Prints the file names as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_FILES = ("pyproject.toml", "README.md")
# manylinux tags a current Debian (glibc >= 2.36) accepts, newest first
GLIBC_MINORS = (36, 34, 31, 28, 27, 24, 17)


def source_digest(src: Path, request: list[str]) -> str:
    h = hashlib.sha256("\0".join(request).encode())
    paths = [src / n for n in SOURCE_FILES]
    paths += sorted(
        p for p in (src / "sstpd").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for p in paths:
        h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def run(cmd: list[str], **kw: object) -> None:
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def main() -> None:
    src, out, pyver, arch, *pip_args = sys.argv[1:]
    src, out = Path(src).resolve(), Path(out)
    extras = ""
    if pip_args and pip_args[0].startswith("--extras="):
        extras = pip_args.pop(0).split("=", 1)[1]
    request = [pyver, arch, *pip_args] + ([f"--extras={extras}"] if extras else [])
    digest = source_digest(src, request)
    marker = out / ".sstpd-wheelhouse"
    if not (marker.exists() and marker.read_text().strip() == digest):
        with tempfile.TemporaryDirectory(prefix="sstpd-wheel-") as tmp:
            tree = Path(tmp) / "src"
            tree.mkdir()
            for name in SOURCE_FILES:
                shutil.copy2(src / name, tree / name)
            shutil.copytree(
                src / "sstpd", tree / "sstpd", ignore=shutil.ignore_patterns("__pycache__")
            )
            built = Path(tmp) / "built"
            env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PYTHONHASHSEED="0")
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "-q",
                    "--no-deps",
                    "-w",
                    str(built),
                    str(tree),
                ],
                env=env,
            )
            (wheel,) = built.glob("sstpd-*.whl")
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            shutil.copy2(wheel, out / wheel.name)
            platforms = [f"--platform=manylinux_2_{m}_{arch}" for m in GLIBC_MINORS]
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--only-binary=:all:",
                    f"--python-version={pyver}",
                    "--implementation=cp",
                    *platforms,
                    "--platform=linux_" + arch,
                    "-d",
                    str(out),
                    *pip_args,
                    str(out / wheel.name) + (f"[{extras}]" if extras else ""),
                ]
            )
        marker.write_text(digest + "\n")
    print(json.dumps(sorted(p.name for p in out.glob("*.whl"))))


if __name__ == "__main__":
    main()
