"""Tunnel addresses: in the design's ranges, unique per account, stable across
reconnects, allocated without races (issue 2, item 17)."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid

from zerogate.api.devices import upsert_client, upsert_gateway

# DESIGN.md "Addresses": tunnel addresses of clients and gateways.
TUNNEL_V4 = ipaddress.IPv4Network("100.64.0.0/11")
TUNNEL_V6 = ipaddress.IPv6Network("fd00:2021:1111::/107")


async def test_client_addresses_are_stable_across_reconnects(h, tenant, api_pool):
    first = await h.make_client(api_pool, tenant, tenant.actor_id, "laptop-1")
    assert first.ipv4 in TUNNEL_V4
    assert first.ipv6 in TUNNEL_V6
    async with api_pool.acquire() as conn:
        again = await upsert_client(
            conn,
            account_id=tenant.account_id,
            actor_id=tenant.actor_id,
            external_id="laptop-1",
            public_key="new-key",
            name="renamed",
        )
    assert again.id == first.id
    assert (again.ipv4, again.ipv6) == (first.ipv4, first.ipv6)
    assert again.public_key == "new-key"
    assert again.name == "renamed"


async def test_gateway_addresses_are_stable_and_scoped_to_the_site(h, tenant, api_pool):
    site, other = await h.make_site(tenant), await h.make_site(tenant)
    one = await h.make_gateway(api_pool, tenant, site["id"], "gw")
    again = await h.make_gateway(api_pool, tenant, site["id"], "gw")
    elsewhere = await h.make_gateway(api_pool, tenant, other["id"], "gw")
    assert again.id == one.id
    assert again.ipv4 == one.ipv4
    assert elsewhere.id != one.id
    assert elsewhere.ipv4 != one.ipv4
    assert one.type == "gateway"
    assert one.site_id == uuid.UUID(site["id"])


async def test_concurrent_first_connects_get_distinct_addresses(tenant, api_pool):
    """Many clients and gateways at once: all succeed, no address twice."""
    site_id = None
    async with api_pool.acquire() as conn:
        site_id = await conn.fetchval(
            "INSERT INTO sites (account_id, name) VALUES ($1, 'race') RETURNING id",
            tenant.account_id,
        )

    async def connect(i: int):
        async with api_pool.acquire() as conn, conn.transaction():
            if i % 4 == 0:
                return await upsert_gateway(
                    conn,
                    account_id=tenant.account_id,
                    site_id=site_id,
                    external_id=f"gw-{i}",
                    public_key=f"k{i}",
                    name=f"g{i}",
                )
            return await upsert_client(
                conn,
                account_id=tenant.account_id,
                actor_id=tenant.actor_id,
                external_id=f"c-{i}",
                public_key=f"k{i}",
                name=f"c{i}",
            )

    devices = await asyncio.gather(*(connect(i) for i in range(40)))
    assert len({d.id for d in devices}) == 40
    assert len({d.ipv4 for d in devices}) == 40
    assert len({d.ipv6 for d in devices}) == 40


async def test_same_client_connecting_twice_at_once_is_one_row(tenant, api_pool):
    async def connect():
        async with api_pool.acquire() as conn:
            return await upsert_client(
                conn,
                account_id=tenant.account_id,
                actor_id=tenant.actor_id,
                external_id="twin",
                public_key="k",
                name="twin",
            )

    a, b = await asyncio.gather(connect(), connect())
    assert a.id == b.id
    assert a.ipv4 == b.ipv4


async def test_address_collisions_are_retried(tenant, api_pool, monkeypatch):
    """Force the first draw onto an address already taken in the account."""
    from zerogate.api import devices

    async with api_pool.acquire() as conn:
        taken = await upsert_client(
            conn,
            account_id=tenant.account_id,
            actor_id=tenant.actor_id,
            external_id="taken",
            public_key="k",
            name="a",
        )
    draws = iter(
        [
            (taken.ipv4, taken.ipv6),
            (TUNNEL_V4.network_address + 77, TUNNEL_V6.network_address + 77),
        ]
    )
    monkeypatch.setattr(devices, "draw_addresses", lambda: next(draws))
    async with api_pool.acquire() as conn, conn.transaction():
        fresh = await upsert_client(
            conn,
            account_id=tenant.account_id,
            actor_id=tenant.actor_id,
            external_id="fresh",
            public_key="k",
            name="b",
        )
    assert fresh.ipv4 == TUNNEL_V4.network_address + 77
    assert fresh.ipv6 == TUNNEL_V6.network_address + 77


async def test_same_addresses_may_repeat_in_another_account(make_tenant, api_pool, monkeypatch):
    from zerogate.api import devices

    one, two = await make_tenant(), await make_tenant()
    fixed = (TUNNEL_V4.network_address + 5, TUNNEL_V6.network_address + 5)
    monkeypatch.setattr(devices, "draw_addresses", lambda: fixed)
    async with api_pool.acquire() as conn:
        a = await upsert_client(
            conn,
            account_id=one.account_id,
            actor_id=one.actor_id,
            external_id="x",
            public_key="k",
            name="a",
        )
        b = await upsert_client(
            conn,
            account_id=two.account_id,
            actor_id=two.actor_id,
            external_id="x",
            public_key="k",
            name="b",
        )
    assert a.ipv4 == b.ipv4 == fixed[0]


def test_draws_stay_inside_the_ranges_and_skip_the_edges():
    from zerogate.api.devices import draw_addresses

    for _ in range(2000):
        v4, v6 = draw_addresses()
        assert v4 in TUNNEL_V4
        assert v6 in TUNNEL_V6
        assert v4 not in (TUNNEL_V4.network_address, TUNNEL_V4.broadcast_address)
        assert int(v4) - int(TUNNEL_V4.network_address) == int(v6) - int(TUNNEL_V6.network_address)
