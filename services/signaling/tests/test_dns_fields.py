"""Signaling carries a DNS resource's name and proxy addresses, and resource changes, to gateways.

Against the real api, registry and signaling on loopback; the agents are
plain WebSockets speaking the protocol of ``zerogate.common.messages.signaling``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from zerogate.signaling import __version__
from zerogate.testing.stack import ControlPlane

pytestmark = pytest.mark.slow

PROXIES = ["100.96.4.4", "100.96.4.5", "fd00:2021:1111:8000::404"]


@pytest.fixture(scope="module")
def plane(
    nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    workdir: Path = tmp_path_factory.mktemp("signaling-dns")
    with ControlPlane(nats_url=nats_url, database_url=database_url, workdir=workdir) as cp:
        cp.api()
        cp.registry()
        cp.signaling()
        yield cp


def _url(plane: ControlPlane, kind: str) -> str:
    sig = next(p for p in plane.processes if p.name == "signaling")
    query = {
        "public_key": base64.b64encode(os.urandom(32)).decode(),
        "id": f"dev-{uuid.uuid4().hex[:8]}",
        "name": "test",
        "version": __version__,
    }
    return f"ws://127.0.0.1:{sig.ports['http']}/v1/{kind}?{urlencode(query)}"


async def _connect(url: str, token: str) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"}
    return await websockets.connect(url, additional_headers=headers, open_timeout=10)


async def _frame(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return dict(frame)


async def test_a_name_and_its_proxy_addresses_reach_the_gateway_and_filters_follow(
    plane: ControlPlane,
) -> None:
    admin = plane.admin()
    site = admin.site()
    resource = admin.resource(site, "*.corp.example", type="dns", ip_stack="ipv4_only")
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    admin.policy(group, resource)
    gateway = await _connect(_url(plane, "gateway"), admin.gateway_token(site))
    client = await _connect(_url(plane, "client"), admin.client_token(account))
    try:
        await gateway.send(json.dumps({"type": "held_authorizations", "authorizations": []}))
        await _frame(gateway, "init")
        init = await _frame(client, "init")
        assert [r["ip_stack"] for r in init["resources"]] == ["ipv4_only"]
        await client.send(json.dumps({
            "type": "request_authorization", "resource_id": resource["id"],
            "domain": "app.corp.example", "proxy_ips": PROXIES,
        }))  # fmt: skip
        create = await _frame(gateway, "create_authorization")
        assert create["domain"] == "app.corp.example"
        assert create["proxy_ips"] == PROXIES
        await gateway.send(
            json.dumps({"type": "authorization_confirmed", "ref_id": create["ref"]["id"]})
        )
        created = await _frame(client, "authorization_created")
        assert created["domain"] == "app.corp.example"
        # a filter change is still allowed: the gateway hears of the new filters
        filters = [{"protocol": "tcp", "ports": ["443"]}]
        admin.call("PATCH", f"/v1/resources/{resource['id']}", {"filters": filters}, expect=200)
        updated = await _frame(gateway, "resource_updated")
        assert updated["resource"]["id"] == resource["id"]
        assert updated["resource"]["filters"] == filters
        # a request without a name is the old protocol: no DNS fields on the way
        await client.send(
            json.dumps({"type": "request_authorization", "resource_id": resource["id"],
                        "connected_gateway_ids": [created["gateway_id"]]})
        )  # fmt: skip
        plain = await _frame(gateway, "create_authorization")
        assert "domain" not in plain
        assert plain["proxy_ips"] == []
    finally:
        await client.close()
        await gateway.close()
        admin.close()
