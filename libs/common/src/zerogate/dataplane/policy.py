"""Full-tunnel routing with a firewall mark, as wg-quick does for ``0.0.0.0/0``.

When a client turns the Internet resource on, everything should go through
the tunnel except the tunnel's own traffic. Replacing the default route would
loop: the agent's UDP datagrams to the gateway and the relays would enter the
tunnel too. So, per address family (wg-quick's ``add_default``):

* table :data:`TABLE` holds ``default dev <tun>``;
* rule ``not fwmark MARK lookup TABLE``: unmarked packets use that table;
* rule ``lookup main suppress_prefixlength 0`` (tried first): every route of
  the main table but its default ones still wins (the LAN, the resources'
  routes through the TUN);
* rules ``to ADDRESS lookup main`` (tried before both): hosts that must stay
  outside the tunnel whatever their socket (the control plane);
* the agent's UDP socket carries ``SO_MARK = MARK``, so ICE, TURN and
  WireGuard datagrams fall through to the main table and its default route.

Rules outlive the process that added them (routes in :data:`TABLE` vanish
with the TUN), so :meth:`PolicyRouting.apply` returns what it added, for the
caller to keep somewhere a later start can find it and pass to
:func:`remove_rules` after a crash.

Blocking (pyroute2): call it off the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from zerogate.dataplane.errors import TunError

log = logging.getLogger(__name__)

#: The mark of the agent's socket and the routing table of the default routes ("ZG").
MARK: Final = 0x5A47
TABLE: Final = 0x5A47
#: Rule priorities: exclusions, then the main table without defaults, then the tunnel.
PRIORITY: Final = 5200
MAIN_TABLE: Final = 254
FR_INVERT: Final = 0x2  # linux/fib_rules.h
_FAMILIES: Final = {4: socket.AF_INET, 6: socket.AF_INET6}

#: One rule as kept for a later removal: keyword arguments of ``IPRoute.rule``.
RuleSpec = dict[str, Any]


def _rules(mark: int, table: int, exclude: Iterable[str]) -> list[RuleSpec]:
    specs: list[RuleSpec] = []
    for address in sorted(set(exclude)):
        ip = ipaddress.ip_address(address)
        specs.append({"family": ip.version, "table": MAIN_TABLE, "priority": PRIORITY,
                      "dst": str(ip), "dst_len": ip.max_prefixlen})  # fmt: skip
    for version in (4, 6):
        specs.append({"family": version, "table": MAIN_TABLE, "priority": PRIORITY + 1,
                      "suppress_prefixlen": 0})  # fmt: skip
        specs.append({"family": version, "table": table, "priority": PRIORITY + 2,
                      "fwmark": mark, "fwmask": 0xFFFFFFFF, "flags": FR_INVERT})  # fmt: skip
    return specs


def _call(ipr: IPRoute, command: str, spec: Mapping[str, Any]) -> None:
    kwargs = dict(spec)
    kwargs["family"] = _FAMILIES[int(kwargs["family"])]
    ipr.rule(command, **kwargs)


def remove_rules(specs: Iterable[Mapping[str, Any]]) -> int:
    """Delete rules added before (by a run that may have crashed); returns how many went."""
    removed = 0
    with IPRoute() as ipr:
        for spec in specs:
            try:
                _call(ipr, "del", spec)
                removed += 1
            except (NetlinkError, KeyError, ValueError, TypeError) as exc:
                if isinstance(exc, NetlinkError) and exc.code not in (errno.ENOENT, errno.ESRCH):
                    log.warning("cannot remove a routing rule: %s", exc)
    return removed


class PolicyRouting:
    """The Internet resource's routes through ``ifname`` (see the module doc)."""

    def __init__(self, ifname: str, *, mark: int = MARK, table: int = TABLE) -> None:
        self.ifname = ifname
        self.mark = mark
        self.table = table
        self.rules: list[RuleSpec] = []

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def apply(self, exclude: Iterable[str] = ()) -> list[RuleSpec]:
        """Default routes for both families through the TUN; ``exclude`` stays outside."""
        wanted = _rules(self.mark, self.table, exclude)
        if wanted == self.rules:
            return list(self.rules)
        self.remove()
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.ifname)
                if not found:
                    raise TunError(f"interface {self.ifname} vanished")
                index = int(found[0])
                for dst in ("0.0.0.0/0", "::/0"):
                    ipr.route("replace", dst=dst, oif=index, table=self.table)
                for spec in wanted:
                    try:
                        _call(ipr, "add", spec)
                    except NetlinkError as exc:
                        if exc.code != errno.EEXIST:
                            raise
                    self.rules.append(spec)
        except NetlinkError as exc:
            self.remove()
            raise TunError(f"policy routing through {self.ifname}: {exc}") from exc
        return list(self.rules)

    def remove(self) -> None:
        """Delete our rules (the table's routes go with the TUN, or are deleted here)."""
        if not self.rules:
            return
        remove_rules(self.rules)
        self.rules = []
        with contextlib.suppress(NetlinkError), IPRoute() as ipr:
            for dst in ("0.0.0.0/0", "::/0"):
                with contextlib.suppress(NetlinkError):
                    ipr.route("del", dst=dst, table=self.table)
