"""Clients and gateways ("devices"): upsert on connect, tunnel addresses.

Each device gets one IPv4 from 100.64.0.0/11 and one IPv6 from
fd00:2021:1111::/107 (DESIGN.md, "Addresses"), unique in its account (unique
indexes ``devices_ipv4``/``devices_ipv6`` over clients and gateways together),
and stable across reconnects: the row is keyed by (actor, external id) for a
client and (site, external id) for a gateway, and an upsert never changes the
addresses of an existing row. A new row draws a random offset, the same for
both families; on a unique violation of either address the insert is retried
inside a savepoint with a new draw, so concurrent connects never race.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from zerogate.api.db import Connection

#: DESIGN.md "Addresses": tunnel addresses of clients and gateways.
TUNNEL_IPV4_NETWORK: Final = ipaddress.IPv4Network("100.64.0.0/11")
TUNNEL_IPV6_NETWORK: Final = ipaddress.IPv6Network("fd00:2021:1111::/107")
#: Both networks hold 2**21 addresses; offsets 0 and the last are never used.
_OFFSETS: Final = min(TUNNEL_IPV4_NETWORK.num_addresses, TUNNEL_IPV6_NETWORK.num_addresses)
MAX_ALLOCATION_ATTEMPTS: Final = 32
_ADDRESS_INDEXES: Final = frozenset({"devices_ipv4", "devices_ipv6"})

DeviceType = Literal["client", "gateway"]


class AddressPoolExhausted(RuntimeError):
    """No free tunnel address was found after :data:`MAX_ALLOCATION_ATTEMPTS` draws."""


@dataclass(frozen=True, slots=True)
class Device:
    id: uuid.UUID
    account_id: uuid.UUID
    type: DeviceType
    actor_id: uuid.UUID | None
    site_id: uuid.UUID | None
    external_id: str
    name: str
    public_key: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    verified_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Device:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            type=row["type"],
            actor_id=row["actor_id"],
            site_id=row["site_id"],
            external_id=row["external_id"],
            name=row["name"],
            public_key=row["public_key"],
            ipv4=ipaddress.IPv4Address(str(row["ipv4"]).split("/")[0]),
            ipv6=ipaddress.IPv6Address(str(row["ipv6"]).split("/")[0]),
            verified_at=row["verified_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class SiteGateway:
    """A gateway as a flow authorization hands it to signaling (addresses as text)."""

    id: str
    public_key: str
    ipv4: str
    ipv6: str
    name: str
    last_seen_remote_ip: str | None


def draw_addresses() -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address]:
    offset = 1 + secrets.randbelow(_OFFSETS - 2)
    return (
        TUNNEL_IPV4_NETWORK.network_address + offset,
        TUNNEL_IPV6_NETWORK.network_address + offset,
    )


_UPSERT: Final = """
INSERT INTO devices AS d (account_id, type, actor_id, site_id, external_id, name, public_key,
                          ipv4, ipv6, last_seen_at, last_seen_remote_ip, last_seen_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10, $11)
ON CONFLICT {target} DO UPDATE
   SET name = EXCLUDED.name, public_key = EXCLUDED.public_key,
       last_seen_at = now(), last_seen_remote_ip = EXCLUDED.last_seen_remote_ip,
       last_seen_version = EXCLUDED.last_seen_version, updated_at = now()
RETURNING d.*"""
_CLIENT_TARGET: Final = "(account_id, actor_id, external_id) WHERE type = 'client'"
_GATEWAY_TARGET: Final = "(site_id, external_id) WHERE type = 'gateway'"


async def _upsert(conn: Connection, target: str, args: tuple[Any, ...]) -> Device:
    sql = _UPSERT.format(target=target)
    for _ in range(MAX_ALLOCATION_ATTEMPTS):
        ipv4, ipv6 = draw_addresses()
        try:
            async with conn.transaction():
                row = await conn.fetchrow(sql, *args[:7], ipv4, ipv6, *args[7:])
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name in _ADDRESS_INDEXES:
                continue
            raise
        return Device.from_row(row)
    raise AddressPoolExhausted("no free tunnel address in this account")


async def upsert_client(
    conn: Connection,
    *,
    account_id: uuid.UUID,
    actor_id: uuid.UUID,
    external_id: str,
    public_key: str,
    name: str,
    remote_ip: str | None = None,
    version: str | None = None,
) -> Device:
    """Create the client on first connect, else refresh it; addresses stay."""
    return await _upsert(
        conn,
        _CLIENT_TARGET,
        (account_id, "client", actor_id, None, external_id, name, public_key, remote_ip, version),
    )


async def upsert_gateway(
    conn: Connection,
    *,
    account_id: uuid.UUID,
    site_id: uuid.UUID,
    external_id: str,
    public_key: str,
    name: str,
    remote_ip: str | None = None,
    version: str | None = None,
) -> Device:
    """Create the gateway on first connect, else refresh it; addresses stay."""
    return await _upsert(
        conn,
        _GATEWAY_TARGET,
        (account_id, "gateway", None, site_id, external_id, name, public_key, remote_ip, version),
    )
