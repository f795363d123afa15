"""The gateway's host set-up: IP forwarding and masquerading of the tunnel ranges.

As Firezone's gateway init does: forwarding on for both families, traffic
from the tunnel ranges (``100.64.0.0/11``, ``fd00:2021:1111::/107``)
masqueraded as it leaves for the site's network, and the tunnel interface
allowed in the FORWARD chain. Our rules live in chains of their own named
after the interface (``ZG-NAT-<if>``, ``ZG-FWD-<if>``), jumped to from
POSTROUTING and FORWARD, so removing them removes exactly what we added.
:meth:`HostSetup.apply` first clears what a crashed earlier run left;
:meth:`HostSetup.remove` undoes everything, restoring the forwarding sysctls
to what they were.

Needs ``iptables``/``ip6tables`` (Debian package ``iptables``) and
CAP_NET_ADMIN; a missing tool stops the gateway with a message naming the
package.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from zerogate.common.errors import ConfigError

log = logging.getLogger(__name__)

TUNNEL_V4 = "100.64.0.0/11"  # DESIGN.md, tunnel addresses
TUNNEL_V6 = "fd00:2021:1111::/107"
SYSCTLS = {
    4: Path("/proc/sys/net/ipv4/ip_forward"),
    6: Path("/proc/sys/net/ipv6/conf/all/forwarding"),
}
COMMAND_TIMEOUT = 10.0


@dataclass
class HostSetup:
    interface: str
    ipv6: bool = True
    _saved: dict[int, str] = field(default_factory=dict)
    applied: bool = False

    @property
    def nat_chain(self) -> str:
        return f"ZG-NAT-{self.interface}"[:28]

    @property
    def forward_chain(self) -> str:
        return f"ZG-FWD-{self.interface}"[:28]

    def _tools(self) -> list[tuple[int, str, str]]:
        out = [(4, "iptables", TUNNEL_V4)]
        if self.ipv6:
            out.append((6, "ip6tables", TUNNEL_V6))
        for _, tool, _ in out:
            if shutil.which(tool) is None:
                raise ConfigError(
                    f"gateway: {tool} is missing; install the Debian package iptables",
                    code="missing_package",
                )
        return out

    def apply(self) -> None:
        """Forwarding on, masquerade the tunnel ranges, accept the tunnel in FORWARD."""
        tools = self._tools()
        self.remove(quiet=True)
        for version, path in SYSCTLS.items():
            if version == 6 and not self.ipv6:
                continue
            try:
                # Already on is left alone: in a container /proc/sys is read-only
                # and the runtime sets it (--sysctl net.ipv4.ip_forward=1).
                current = path.read_text().strip()
                if current != "1":
                    path.write_text("1\n")
                    self._saved[version] = current
            except OSError as exc:
                raise ConfigError(
                    f"gateway: cannot turn on IPv{version} forwarding ({path}): {exc.strerror}; "
                    "run as root or with CAP_NET_ADMIN"
                ) from exc
        for _, tool, tunnel in tools:
            nat, fwd = self.nat_chain, self.forward_chain
            self._run(tool, "-t", "nat", "-N", nat)
            self._run(tool, "-t", "nat", "-A", nat, "-s", tunnel, "!", "-o", self.interface,
                      "-j", "MASQUERADE")  # fmt: skip
            self._run(tool, "-t", "nat", "-A", "POSTROUTING", "-j", nat)
            self._run(tool, "-N", fwd)
            self._run(tool, "-A", fwd, "-i", self.interface, "-j", "ACCEPT")
            self._run(tool, "-A", fwd, "-o", self.interface, "-m", "conntrack",
                      "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")  # fmt: skip
            self._run(tool, "-I", "FORWARD", "-j", fwd)
        self.applied = True
        log.info("forwarding and masquerading on", extra={"interface": self.interface})

    def remove(self, *, quiet: bool = False) -> None:
        """Remove our chains and jumps; restore the forwarding sysctls we changed."""
        try:
            tools = self._tools()
        except ConfigError:
            if quiet:
                return
            raise
        for _, tool, _ in tools:
            nat, fwd = self.nat_chain, self.forward_chain
            while self._run(tool, "-t", "nat", "-D", "POSTROUTING", "-j", nat, check=False) == 0:
                pass
            self._run(tool, "-t", "nat", "-F", nat, check=False)
            self._run(tool, "-t", "nat", "-X", nat, check=False)
            while self._run(tool, "-D", "FORWARD", "-j", fwd, check=False) == 0:
                pass
            self._run(tool, "-F", fwd, check=False)
            self._run(tool, "-X", fwd, check=False)
        for version, value in self._saved.items():
            try:
                SYSCTLS[version].write_text(value + "\n")
            except OSError:
                log.warning("cannot restore a forwarding sysctl", extra={"version": version})
        self._saved.clear()
        if self.applied:
            log.info("forwarding and masquerading removed", extra={"interface": self.interface})
        self.applied = False

    @staticmethod
    def _run(*argv: str, check: bool = True) -> int:
        done = subprocess.run(
            [argv[0], "-w", "5", *argv[1:]],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise ConfigError(f"gateway: {' '.join(argv)} failed: {done.stderr.strip()[:300]}")
        return done.returncode
