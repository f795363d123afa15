"""Fixtures of the WireGuard core tests; the helpers live in wg_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wg_helpers import Link, make_link


@pytest.fixture
def link() -> Link:
    return make_link()


@pytest.fixture
def linked() -> Link:
    """A link with a completed handshake and one packet each way."""
    lk = make_link()
    lk.handshake()
    return lk
