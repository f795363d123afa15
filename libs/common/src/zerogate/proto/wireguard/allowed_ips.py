"""Cryptokey routing: AllowedIPs as a longest-prefix-match table (whitepaper §2).

One dict per prefix length, mapping the network's high bits (address >>
(bits - prefix length)) to the owner; a lookup tries the lengths in use from
longest to shortest. A prefix has at most one owner: inserting it for another
owner moves it, like ``wg set ... allowed-ips`` does.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from zerogate.proto.net import IPNetwork

T = TypeVar("T")


class _Family(Generic[T]):
    __slots__ = ("_bits", "_by_len", "levels")

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._by_len: dict[int, dict[int, T]] = {}
        self.levels: tuple[tuple[int, dict[int, T]], ...] = ()

    def _relevel(self) -> None:
        self.levels = tuple(
            (self._bits - plen, table)
            for plen, table in sorted(self._by_len.items(), reverse=True)
            if table
        )

    def insert(self, plen: int, key: int, owner: T) -> T | None:
        table = self._by_len.setdefault(plen, {})
        previous = table.get(key)
        table[key] = owner
        self._relevel()
        return previous

    def remove(self, plen: int, key: int) -> None:
        table = self._by_len.get(plen)
        if table is not None and table.pop(key, None) is not None:
            if not table:
                del self._by_len[plen]
            self._relevel()

    def lookup(self, address: int) -> T | None:
        for shift, table in self.levels:
            owner = table.get(address >> shift)
            if owner is not None:
                return owner
        return None


class AllowedIPs(Generic[T]):
    """Longest-prefix match over IPv4 and IPv6 networks."""

    __slots__ = ("v4", "v6")

    def __init__(self) -> None:
        self.v4: _Family[T] = _Family(32)
        self.v6: _Family[T] = _Family(128)

    def _place(self, network: IPNetwork) -> tuple[_Family[T], int, int]:
        family = self.v4 if network.version == 4 else self.v6
        plen = network.prefixlen
        return family, plen, int(network.network_address) >> (network.max_prefixlen - plen)

    def insert(self, network: IPNetwork, owner: T) -> T | None:
        """Route ``network`` to ``owner``; returns the previous owner, if any."""
        family, plen, key = self._place(network)
        return family.insert(plen, key, owner)

    def remove(self, network: IPNetwork) -> None:
        family, plen, key = self._place(network)
        family.remove(plen, key)

    def lookup(self, version: int, address: int) -> T | None:
        return (self.v4 if version == 4 else self.v6).lookup(address)
