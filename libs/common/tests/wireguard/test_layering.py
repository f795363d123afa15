"""The core stays sans-IO: it imports no asyncio, socket or time, and nothing of
ours outside zerogate.proto."""

from __future__ import annotations

import ast
from pathlib import Path

import zerogate.proto.ip.packet
import zerogate.proto.wireguard

FORBIDDEN = {"asyncio", "socket", "time", "selectors", "threading", "logging"}


def _modules() -> list[Path]:
    root = Path(zerogate.proto.wireguard.__file__).parent
    return [*sorted(root.glob("*.py")), Path(zerogate.proto.ip.packet.__file__)]


def test_imports_are_sans_io() -> None:
    files = _modules()
    assert len(files) >= 10
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, (path.name, name)
                if top == "zerogate":
                    assert name.startswith("zerogate.proto."), (path.name, name)
