"""The house has three floors and arrows only point down (CONVENTIONS.md).

- ``zerogate.proto`` (sans-IO cores) imports nothing of ours outside
  ``zerogate.proto``, and no asyncio, sockets, NATS, pyroute2 or clock.
- ``zerogate.common`` and ``zerogate.dataplane`` import no service.
- Only ``zerogate.dataplane`` imports pyroute2.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "libs" / "common" / "src" / "zerogate"
SERVICES = ("api", "signaling", "relay", "gateway", "client")
IO_MODULES = {"asyncio", "socket", "selectors", "nats", "pyroute2", "uvloop", "time", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(*parts: str) -> list[Path]:
    return sorted(p for p in LIB.joinpath(*parts).rglob("*.py") if "__pycache__" not in p.parts)


def _top(name: str) -> str:
    return name.split(".")[0]


def test_there_is_code_to_check() -> None:
    assert _files("proto"), "no protocol cores found"
    assert _files("common")


@pytest.mark.parametrize("path", _files("proto"), ids=lambda p: str(p.relative_to(LIB)))
def test_protocol_cores_are_sans_io(path: Path) -> None:
    for name in _imports(path):
        assert _top(name) not in IO_MODULES, f"{path.name} imports {name}"
        if name.startswith("zerogate."):
            assert name.startswith("zerogate.proto"), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "path", _files("common") + _files("dataplane"), ids=lambda p: str(p.relative_to(LIB))
)
def test_libraries_import_no_service(path: Path) -> None:
    for name in _imports(path):
        for service in SERVICES:
            assert not name.startswith(f"zerogate.{service}"), f"{path.name} imports {name}"


def test_only_the_dataplane_imports_pyroute2() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.glob("**/src/zerogate/**/*.py")
        if "dataplane" not in p.parts and any(_top(n) == "pyroute2" for n in _imports(p))
    ]
    assert offenders == []
