"""Proxy addresses for the names of DNS resources (DESIGN.md, "Addresses").

A client answers an A or AAAA query for a name that matches one of its DNS
resources with addresses of its own: 4 IPv4 addresses from
``100.96.0.0/11`` and 4 IPv6 addresses from ``fd00:2021:1111:8000::/107``
(Firezone's layout). The gateway that serves the resource learns which name
they stand for and translates them to the name's real addresses.

Both ranges hold 2**21 addresses, so 2**19 *slots* of 4. A name's slot comes
from a hash of the name, so it is the same after a restart (and on another
client); when another name holds that slot, the next free slot is taken
(linear probing), and :meth:`ProxyAddresses.load` restores such choices from
what a previous run saved. Slot ``k`` gives the IPv4 addresses
``100.96.0.0 + 4k .. + 4k + 3`` and the IPv6 addresses likewise from
``fd00:2021:1111:8000::``, so one slot stands for one name in both families.

Slots that overlap the stub resolver's range ``100.100.111.0/24`` and slot 0
(the network address) are never given out.

Only proxy addresses stand for a resource's name on the client: the answers
the gateway's resolver gives to other questions about such a name (MX, SRV,
CNAME, ...) lose their A and AAAA records on both sides
(:func:`drop_addresses`), so no glue and no CNAME chain's end shows a real one.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Final

Addresses = tuple[tuple[ipaddress.IPv4Address, ...], tuple[ipaddress.IPv6Address, ...]]

PROXY_V4: Final = ipaddress.IPv4Network("100.96.0.0/11")  # DESIGN.md, "Addresses"
PROXY_V6: Final = ipaddress.IPv6Network("fd00:2021:1111:8000::/107")
#: The stub resolver's addresses (DESIGN.md) and Firezone's sentinel range around the IPv4 one.
STUB_V4: Final = ipaddress.IPv4Address("100.100.111.1")
STUB_V6: Final = ipaddress.IPv6Address("fd00:2021:1111:8000:100:100:111:0")
SENTINEL_V4: Final = ipaddress.IPv4Network("100.100.111.0/24")
PER_FAMILY: Final = 4
SLOTS: Final = PROXY_V4.num_addresses // PER_FAMILY  # 2**19
#: RR types A and AAAA (RFC 1035, RFC 3596).
ADDRESS_TYPES: Final = frozenset({1, 28})
_BASE4: Final = int(PROXY_V4.network_address)
_BASE6: Final = int(PROXY_V6.network_address)
_RESERVED: Final = frozenset(
    {0}
    | set(
        range(
            (int(SENTINEL_V4.network_address) - _BASE4) // PER_FAMILY,
            (int(SENTINEL_V4.broadcast_address) - _BASE4) // PER_FAMILY + 1,
        )
    )
)
_MASK4: Final = int(PROXY_V4.netmask)
_MASK6: Final = int(PROXY_V6.netmask)


def preferred_slot(name: str) -> int:
    """Where a name's addresses live unless another name got there first."""
    digest = hashlib.sha256(name.encode("ascii", "replace")).digest()
    return int.from_bytes(digest[:8], "big") % SLOTS


def slot_addresses(slot: int) -> Addresses:
    """The 4 IPv4 and 4 IPv6 proxy addresses of ``slot``."""
    v4 = tuple(ipaddress.IPv4Address(_BASE4 + PER_FAMILY * slot + i) for i in range(PER_FAMILY))
    v6 = tuple(ipaddress.IPv6Address(_BASE6 + PER_FAMILY * slot + i) for i in range(PER_FAMILY))
    return v4, v6


def slot_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int] | None:
    """``(slot, index within it)`` of a proxy address; ``None`` outside the proxy ranges."""
    value = int(address)
    if address.version == 4:
        if value & _MASK4 != _BASE4:
            return None
        offset = value - _BASE4
    else:
        if value & _MASK6 != _BASE6:
            return None
        offset = value - _BASE6
    return divmod(offset, PER_FAMILY)


def is_proxy(version: int, value: int) -> bool:
    """Whether an address (as ``int``) lies in that family's proxy range."""
    return (value & _MASK4) == _BASE4 if version == 4 else (value & _MASK6) == _BASE6


class ProxyAddresses:
    """Which name holds which slot, for one client."""

    def __init__(self) -> None:
        self._by_name: dict[str, int] = {}
        self._by_slot: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def slot(self, name: str) -> int:
        """The slot of ``name`` (a normalised name), given out now when it had none."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        if len(self._by_slot) >= SLOTS - len(_RESERVED):
            raise OverflowError("every proxy address is taken")
        slot = preferred_slot(name)
        while slot in self._by_slot or slot in _RESERVED:
            slot = (slot + 1) % SLOTS
        self._by_name[name] = slot
        self._by_slot[slot] = name
        return slot

    def addresses(self, name: str) -> Addresses:
        return slot_addresses(self.slot(name))

    def name_at(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """The name a proxy address stands for, if it was given out."""
        found = slot_of(address)
        return None if found is None else self._by_slot.get(found[0])

    def known(self, name: str) -> int | None:
        return self._by_name.get(name)

    def release(self, name: str) -> None:
        """Give a name's slot back (the owner forgets names it no longer needs)."""
        slot = self._by_name.pop(name, None)
        if slot is not None:
            self._by_slot.pop(slot, None)

    def load(self, saved: Mapping[str, int]) -> None:
        """Take the slots a previous run gave out (bad or clashing entries are skipped)."""
        for name, slot in saved.items():
            if (
                isinstance(name, str)
                and isinstance(slot, int)
                and 0 <= slot < SLOTS
                and slot not in _RESERVED
                and slot not in self._by_slot
                and name not in self._by_name
            ):
                self._by_name[name] = slot
                self._by_slot[slot] = name

    def saved(self) -> dict[str, int]:
        """What :meth:`load` takes back (for a file)."""
        return dict(self._by_name)

    def names(self) -> Iterable[str]:
        return self._by_name.keys()


def drop_addresses(message: Any) -> int:
    """Remove every A and AAAA rrset from a dnspython message's sections; returns how many."""
    dropped = 0
    for section in (message.answer, message.authority, message.additional):
        kept = [rrset for rrset in section if rrset.rdtype not in ADDRESS_TYPES]
        dropped += len(section) - len(kept)
        section[:] = kept
    return dropped
