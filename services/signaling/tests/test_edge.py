"""The WebSocket edge against the real api, registry and signaling processes on loopback.

What an agent sees at connect (close codes, ``init``), how a bad frame is
answered, the frame size limit, heartbeats both ways, and a refusal for a
resource the client may not reach.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from zerogate.common.messages.signaling import MAX_FRAME_BYTES, CloseCode
from zerogate.signaling import __version__
from zerogate.testing.stack import Admin, ControlPlane

pytestmark = pytest.mark.slow

HEARTBEAT_TIMEOUT = 2.0  # ZG_SIGNALING_HEARTBEAT_TIMEOUT for these tests


@pytest.fixture(scope="module")
def plane(
    nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    workdir: Path = tmp_path_factory.mktemp("signaling-edge")
    with ControlPlane(nats_url=nats_url, database_url=database_url, workdir=workdir) as cp:
        cp.api()
        cp.registry()
        cp.signaling(ZG_SIGNALING_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT))
        yield cp


@pytest.fixture
def admin(plane: ControlPlane) -> Iterator[Admin]:
    a = plane.admin()
    yield a
    a.close()


def _url(plane: ControlPlane, kind: str, **params: str) -> str:
    sig = next(p for p in plane.processes if p.name == "signaling")
    query = {
        "public_key": base64.b64encode(os.urandom(32)).decode(),
        "id": f"dev-{uuid.uuid4().hex[:8]}",
        "name": "test",
        "version": __version__,
        **params,
    }
    from urllib.parse import urlencode

    return f"ws://127.0.0.1:{sig.ports['http']}/v1/{kind}?{urlencode(query)}"


async def _connect(url: str, token: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=10)


async def _closed_with(url: str, token: str | None) -> int | None:
    ws = await _connect(url, token)
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def _send(ws: ClientConnection, kind: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": kind, **fields}))


async def _drain_until_closed(ws: ClientConnection, timeout: float) -> None:
    """Read until the server closes the session (raises TimeoutError if it does not)."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()


async def _frame(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame of ``kind`` (heartbeats skipped unless asked for)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return dict(frame)


@pytest.fixture
def client_token(admin: Admin) -> str:
    return admin.client_token(admin.service_account())


@pytest.fixture
async def client(plane: ControlPlane, client_token: str) -> AsyncIterator[ClientConnection]:
    ws = await _connect(_url(plane, "client"), client_token)
    yield ws
    await ws.close()


async def test_a_bad_token_closes_with_4001(plane: ControlPlane) -> None:
    assert await _closed_with(_url(plane, "client"), "no.such-token") == CloseCode.UNAUTHORIZED
    assert await _closed_with(_url(plane, "client"), None) == CloseCode.UNAUTHORIZED


async def test_a_client_token_on_the_gateway_edge_closes_with_4003(
    plane: ControlPlane, client_token: str
) -> None:
    assert await _closed_with(_url(plane, "gateway"), client_token) == CloseCode.FORBIDDEN


async def test_another_major_version_closes_with_4006(
    plane: ControlPlane, client_token: str
) -> None:
    url = _url(plane, "client", version="9.0.0")
    assert await _closed_with(url, client_token) == CloseCode.VERSION_MISMATCH


async def test_a_missing_public_key_closes_with_4002(
    plane: ControlPlane, client_token: str
) -> None:
    url = _url(plane, "client", public_key="short")
    assert await _closed_with(url, client_token) == CloseCode.PROTOCOL_ERROR


async def test_a_client_gets_its_init(client: ClientConnection, admin: Admin) -> None:
    init = await _frame(client, "init")
    assert init["client_id"]
    assert init["interface"]["ipv4"].startswith("100.")
    assert init["interface"]["ipv6"].startswith("fd00:2021:1111:")
    assert init["resources"] == []  # no policy grants it anything yet
    assert init["relays"] == []  # no relay runs here


async def test_a_malformed_frame_gets_an_error_and_the_session_stays(
    client: ClientConnection,
) -> None:
    await _frame(client, "init")
    await client.send("{not json")
    error = await _frame(client, "error")
    assert error["code"] == "bad_request"
    await client.send(json.dumps({"type": "request_authorization"}))  # resource_id missing
    error = await _frame(client, "error")
    assert "resource_id" in error["detail"]
    await client.send(json.dumps({"type": "heartbeat"}))
    assert (await _frame(client, "heartbeat"))["type"] == "heartbeat"


async def test_a_frame_over_64_kib_closes_the_session(client: ClientConnection) -> None:
    await _frame(client, "init")
    big = json.dumps({"type": "heartbeat", "traceparent": "x" * MAX_FRAME_BYTES})
    await client.send(big)
    await _drain_until_closed(client, 10)
    assert client.close_code == CloseCode.TOO_BIG


async def test_a_silent_agent_is_gone_after_the_heartbeat_timeout(
    client: ClientConnection,
) -> None:
    await _frame(client, "init")
    started = asyncio.get_running_loop().time()
    await _drain_until_closed(client, HEARTBEAT_TIMEOUT + 10)
    waited = asyncio.get_running_loop().time() - started
    assert client.close_code == CloseCode.HEARTBEAT_TIMEOUT
    assert HEARTBEAT_TIMEOUT - 0.5 <= waited <= HEARTBEAT_TIMEOUT + 5


async def test_a_resource_the_client_may_not_reach_is_refused(
    client: ClientConnection, admin: Admin
) -> None:
    site = admin.site()
    resource = admin.resource(site, "10.77.0.0/16")
    await _frame(client, "init")
    await _send(client, "request_authorization", resource_id=resource["id"])
    failed = await _frame(client, "authorization_failed")
    assert failed["resource_id"] == resource["id"]
    assert failed["reason"] == "forbidden"
    unknown = str(uuid.uuid4())
    await _send(client, "request_authorization", resource_id=unknown)
    failed = await _frame(client, "authorization_failed")
    assert failed["resource_id"] == unknown
    assert failed["reason"] in ("forbidden", "not_found")


async def test_a_gateway_without_peers_online_makes_access_offline(
    plane: ControlPlane, admin: Admin
) -> None:
    site = admin.site()
    resource = admin.resource(site, "10.78.0.0/16")
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    admin.policy(group, resource)
    ws = await _connect(_url(plane, "client"), admin.client_token(account))
    try:
        init = await _frame(ws, "init")
        assert [r["id"] for r in init["resources"]] == [resource["id"]]
        await _send(ws, "request_authorization", resource_id=resource["id"])
        failed = await _frame(ws, "authorization_failed")
        assert failed["reason"] == "offline"
    finally:
        await ws.close()


async def test_authorization_candidates_and_revocation_between_a_client_and_a_gateway(
    plane: ControlPlane, admin: Admin
) -> None:
    """The protocol of DESIGN.md "Connection setup", agents played by plain WebSockets."""
    site = admin.site()
    resource = admin.resource(site, "10.79.0.0/16")
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    policy = admin.policy(group, resource)
    gateway = await _connect(_url(plane, "gateway"), admin.gateway_token(site))
    client = await _connect(_url(plane, "client"), admin.client_token(account))
    try:
        await gateway.send(json.dumps({"type": "held_authorizations", "authorizations": []}))
        gw_init = await _frame(gateway, "init")
        assert gw_init["site_id"] == site["id"]
        assert gw_init["authorizations"] == []
        await _frame(client, "init")

        await client.send(
            json.dumps({"type": "request_authorization", "resource_id": resource["id"]})
        )
        create = await _frame(gateway, "create_authorization")
        assert create["resource"]["id"] == resource["id"]
        assert create["connection"]["client_ice"]["ufrag"]
        assert len(base64.b64decode(create["connection"]["preshared_key"])) == 32
        await gateway.send(
            json.dumps({"type": "authorization_confirmed", "ref_id": create["ref"]["id"]})
        )
        created = await _frame(client, "authorization_created")
        assert created["gateway_id"] == gw_init["gateway_id"]
        assert created["connection"] == create["connection"]
        assert created["expires_at"]

        line = "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host"
        gateway_id, client_id = gw_init["gateway_id"], create["client"]["id"]
        await _send(client, "broadcast_ice_candidates", peer_ids=[gateway_id], candidates=[line])
        got = await _frame(gateway, "ice_candidates")
        assert got["peer_id"] == create["client"]["id"]
        assert got["candidates"] == [line]
        await _send(gateway, "broadcast_ice_candidates", peer_ids=[client_id], candidates=[line])
        assert (await _frame(client, "ice_candidates"))["peer_id"] == gw_init["gateway_id"]
        # trickling to an agent without an authorization goes nowhere
        await _send(
            client, "broadcast_ice_candidates", peer_ids=[str(uuid.uuid4())], candidates=[line]
        )

        admin.delete_policy(policy)
        reject = await _frame(gateway, "reject_access")
        assert reject == {
            **reject,
            "client_id": create["client"]["id"],
            "resource_id": resource["id"],
        }
        deleted = await _frame(client, "resource_deleted")
        assert deleted["resource_id"] == resource["id"]
    finally:
        await client.close()
        await gateway.close()


async def test_a_reconnecting_gateway_keeps_only_what_still_holds(
    plane: ControlPlane, admin: Admin
) -> None:
    site = admin.site()
    kept, dropped = admin.resource(site, "10.80.0.0/16"), admin.resource(site, "10.81.0.0/16")
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    admin.policy(group, kept)
    gone = admin.policy(group, dropped)
    token = admin.gateway_token(site)
    gateway = await _connect(_url(plane, "gateway"), token)
    client = await _connect(_url(plane, "client"), admin.client_token(account))
    refs = []
    try:
        await gateway.send(json.dumps({"type": "held_authorizations", "authorizations": []}))
        gw_init = await _frame(gateway, "init")
        await _frame(client, "init")
        for resource in (kept, dropped):
            await client.send(
                json.dumps({"type": "request_authorization", "resource_id": resource["id"]})
            )
            create = await _frame(gateway, "create_authorization")
            refs.append(create["ref"])
            await gateway.send(
                json.dumps({"type": "authorization_confirmed", "ref_id": create["ref"]["id"]})
            )
            await _frame(client, "authorization_created")
    finally:
        await gateway.close()
    admin.delete_policy(gone)  # while the gateway is away
    again = await _connect(_url(plane, "gateway", id=gw_init["gateway_id"]), token)
    try:
        await again.send(json.dumps({"type": "held_authorizations", "authorizations": refs}))
        init = await _frame(again, "init")
        assert [r["resource_id"] for r in init["authorizations"]] == [kept["id"]]
    finally:
        await again.close()
        await client.close()
