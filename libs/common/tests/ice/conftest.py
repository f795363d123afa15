"""Fixtures of the ICE agent tests; the helpers live in ice_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
