"""Zerogate gateway: serves a site's resources to authorized clients (``zerogate-gateway``).

Central modules: :mod:`~zerogate.gateway.agent` (the agent: signaling frames,
grants, expiry), :mod:`~zerogate.gateway.state` (who may reach what; the
per-packet check), :mod:`~zerogate.gateway.firewall` (forwarding and
masquerading on the host) and :mod:`~zerogate.gateway.main` (the process).
The tunnel itself is :mod:`zerogate.dataplane.runtime` and
:mod:`zerogate.dataplane.node`.
"""

from importlib import metadata

try:
    __version__ = metadata.version("zerogate-gateway")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.1.0"
