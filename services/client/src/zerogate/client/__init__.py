"""Zerogate client: the headless agent and its CLI (``zerogate``).

Central modules: :mod:`~zerogate.client.agent` (signaling frames, the first
packet, authorizations, status), :mod:`~zerogate.client.state` (resources,
longest-prefix match, access state and buffers), :mod:`~zerogate.client.main`
(the CLI) and :mod:`~zerogate.client.control` (the local control socket). The
tunnel itself is :mod:`zerogate.dataplane.runtime` and :mod:`zerogate.dataplane.node`.
"""

from importlib import metadata

try:
    __version__ = metadata.version("zerogate-client")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.1.0"
