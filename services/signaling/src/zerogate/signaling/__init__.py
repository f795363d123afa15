"""Zerogate signaling: the WebSocket edge that agents keep open (``zerogate-signaling``).

Central modules: :mod:`~zerogate.signaling.hub` (sessions, connection set-up,
revocation, presence), :mod:`~zerogate.signaling.state` (pure choices: which
gateway, which address, fresh secrets), :mod:`~zerogate.signaling.app` (the
FastAPI edge) and :mod:`~zerogate.signaling.main` (the process).
"""

from importlib import metadata

try:
    __version__ = metadata.version("zerogate-signaling")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.1.0"
