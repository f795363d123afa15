"""Every change that can end access is announced on zg.v1.events.* after commit
(issue 2, item 19), observed on the real NATS."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from zerogate.common import subjects
from zerogate.common.messages.events import ChangeEvent

WAIT = 5.0


class Recorder:
    def __init__(self, account_id: uuid.UUID) -> None:
        self.account_id = account_id
        self.events: list[tuple[str, ChangeEvent]] = []
        self.changed = asyncio.Event()

    async def handle(self, subject: str, event: ChangeEvent) -> None:
        if event.account_id == self.account_id:
            self.events.append((subject, event))
            self.changed.set()

    async def expect(self, entity: str, action: str, **ids: Any) -> ChangeEvent:
        """Wait for the event with these ids; it must come on its own subject."""
        subject = f"zg.v1.events.{entity}.{action}"
        want = {
            k: (
                tuple(uuid.UUID(str(x)) for x in v)
                if isinstance(v, list | tuple)
                else uuid.UUID(str(v))
            )
            for k, v in ids.items()
        }
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            for got_subject, event in self.events:
                if got_subject == subject and all(getattr(event, k) == v for k, v in want.items()):
                    assert (event.entity, event.action) == (entity, action)
                    return event
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                seen = [s for s, _ in self.events]
                raise AssertionError(f"no {subject} with {ids}; saw {seen}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def subjects(self) -> list[str]:
        return [s for s, _ in self.events]


@pytest.fixture
async def recorder(bus, tenant):
    """Records the account's events with the subject each really came on."""
    rec = Recorder(tenant.account_id)

    async def on_message(msg) -> None:
        await rec.handle(msg.subject, ChangeEvent.model_validate_json(msg.data))

    sub = await bus.nats.subscribe(subjects.EVENTS_ALL, cb=on_message)
    await bus.flush()
    yield rec
    await sub.unsubscribe()


async def test_event_subject_names_follow_the_design():
    event = ChangeEvent(entity="policy", action="deleted", account_id=uuid.uuid4())
    assert event.subject == "zg.v1.events.policy.deleted"


async def test_every_access_ending_change_publishes_an_event(h, tenant, recorder, api_pool):
    http = tenant.http
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    await recorder.expect("resource", "created", resource_id=resource["id"], site_id=site["id"])
    group = await h.make_group(tenant)
    actor = await h.make_actor(tenant)
    other = await h.make_actor(tenant)
    await http.put(
        f"/v1/groups/{group['id']}/members", json={"actor_ids": [actor["id"], other["id"]]}
    )
    await recorder.expect(
        "membership", "added", group_id=group["id"], actor_ids=sorted([actor["id"], other["id"]])
    )
    policy = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    ids = {"policy_id": policy["id"], "group_id": group["id"], "resource_id": resource["id"]}
    await recorder.expect("policy", "created", **ids)

    # Policy updated / disabled / enabled / deleted.
    await http.patch(f"/v1/policies/{policy['id']}", json={"description": "changed"})
    await recorder.expect("policy", "updated", **ids)
    await http.post(f"/v1/policies/{policy['id']}/disable")
    await recorder.expect("policy", "disabled", **ids)
    await http.post(f"/v1/policies/{policy['id']}/enable")
    await recorder.expect("policy", "enabled", **ids)

    # Membership removed: only the actors that left.
    await http.put(f"/v1/groups/{group['id']}/members", json={"actor_ids": [other["id"]]})
    await recorder.expect("membership", "removed", group_id=group["id"], actor_ids=[actor["id"]])

    # Resource updated.
    await http.patch(f"/v1/resources/{resource['id']}", json={"address": "10.9.0.0/16"})
    await recorder.expect("resource", "updated", resource_id=resource["id"], site_id=site["id"])

    # Client unverified and deleted.
    client = await h.make_client(api_pool, tenant, actor["id"])
    await http.post(f"/v1/clients/{client.id}/verify")
    await recorder.expect("client", "verified", client_id=client.id, actor_id=actor["id"])
    await http.post(f"/v1/clients/{client.id}/unverify")
    await recorder.expect("client", "unverified", client_id=client.id, actor_id=actor["id"])
    await http.delete(f"/v1/clients/{client.id}")
    await recorder.expect("client", "deleted", client_id=client.id, actor_id=actor["id"])

    # Tokens revoked: API token and gateway token.
    token = await tenant.create("/v1/tokens", {})
    await http.delete(f"/v1/tokens/{token['id']}")
    await recorder.expect("token", "revoked", token_id=token["id"], actor_id=tenant.actor_id)
    gw_token = await tenant.create(f"/v1/sites/{site['id']}/gateway_tokens", {})
    await http.delete(f"/v1/sites/{site['id']}/gateway_tokens/{gw_token['id']}")
    await recorder.expect("token", "revoked", token_id=gw_token["id"], site_id=site["id"])

    # Actor disabled and deleted.
    await http.post(f"/v1/actors/{actor['id']}/disable")
    await recorder.expect("actor", "disabled", actor_id=actor["id"])
    await http.delete(f"/v1/actors/{actor['id']}")
    await recorder.expect("actor", "deleted", actor_id=actor["id"])

    # Policy deleted, group deleted, resource deleted, site deleted.
    await http.delete(f"/v1/policies/{policy['id']}")
    await recorder.expect("policy", "deleted", **ids)
    # Deleting a group announces the policies and memberships it takes along.
    doomed = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    await http.delete(f"/v1/groups/{group['id']}")
    await recorder.expect("policy", "deleted", policy_id=doomed["id"], group_id=group["id"])
    await recorder.expect("membership", "removed", group_id=group["id"], actor_ids=[other["id"]])
    await recorder.expect("group", "deleted", group_id=group["id"])
    # Deleting a resource announces its policies too.
    everyone = next(
        g for g in (await http.get("/v1/groups")).json()["data"] if g["kind"] == "everyone"
    )
    last = await tenant.create(
        "/v1/policies", {"group_id": everyone["id"], "resource_id": resource["id"]}
    )
    await http.delete(f"/v1/resources/{resource['id']}")
    await recorder.expect("policy", "deleted", policy_id=last["id"], resource_id=resource["id"])
    await recorder.expect("resource", "deleted", resource_id=resource["id"], site_id=site["id"])
    await http.delete(f"/v1/sites/{site['id']}")
    await recorder.expect("site", "deleted", site_id=site["id"])


async def test_failed_changes_publish_nothing(h, tenant, recorder):
    everyone = next(
        g for g in (await tenant.http.get("/v1/groups")).json()["data"] if g["kind"] == "everyone"
    )
    # Each of these fails inside its transaction: nothing may be announced.
    await tenant.http.delete(f"/v1/groups/{everyone['id']}")
    await tenant.http.delete(f"/v1/policies/{uuid.uuid4()}")
    await tenant.http.post(f"/v1/actors/{tenant.actor_id}/disable")
    group = await h.make_group(tenant)
    await tenant.http.put(
        f"/v1/groups/{group['id']}/members", json={"actor_ids": [str(uuid.uuid4())]}
    )
    # A marker change proves the subscription is live and ordered after the failures.
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    await recorder.expect("resource", "created", resource_id=resource["id"])
    assert recorder.subjects() == ["zg.v1.events.resource.created"]


async def test_moving_a_policy_or_resource_announces_the_old_ids_too(h, tenant, recorder):
    """A policy moved to another group or resource stops granting the old pair, and a
    resource moved to another site leaves the old site's gateways: subscribers keyed
    by the old ids must hear of it."""
    http = tenant.http
    site, new_site = await h.make_site(tenant), await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    other_resource = await h.make_resource(tenant, site["id"], address="10.8.0.0/16")
    group, other_group = await h.make_group(tenant), await h.make_group(tenant)
    policy = await tenant.create(
        "/v1/policies", {"group_id": group["id"], "resource_id": resource["id"]}
    )
    moved = await http.patch(
        f"/v1/policies/{policy['id']}",
        json={"group_id": other_group["id"], "resource_id": other_resource["id"]},
    )
    assert moved.status_code == 200, moved.text
    await recorder.expect(
        "policy",
        "updated",
        policy_id=policy["id"],
        group_id=group["id"],
        resource_id=resource["id"],
    )
    await recorder.expect(
        "policy",
        "updated",
        policy_id=policy["id"],
        group_id=other_group["id"],
        resource_id=other_resource["id"],
    )
    # A change that keeps the pair is announced once.
    await http.patch(f"/v1/policies/{policy['id']}", json={"description": "same pair"})
    await http.patch(f"/v1/resources/{resource['id']}", json={"site_id": new_site["id"]})
    await recorder.expect("resource", "updated", resource_id=resource["id"], site_id=site["id"])
    await recorder.expect("resource", "updated", resource_id=resource["id"], site_id=new_site["id"])
    policy_updates = [e for s, e in recorder.events if s == "zg.v1.events.policy.updated"]
    assert len(policy_updates) == 3
    resource_updates = [
        (e.resource_id, e.site_id)
        for s, e in recorder.events
        if s == "zg.v1.events.resource.updated"
    ]
    # Old site first, then the current one.
    assert resource_updates == [
        (uuid.UUID(resource["id"]), uuid.UUID(site["id"])),
        (uuid.UUID(resource["id"]), uuid.UUID(new_site["id"])),
    ]


async def test_disabling_an_actor_announces_each_token_it_revokes_then_enabling(
    h, tenant, recorder
):
    """Issue 8: disabling revokes the actor's tokens (token.revoked for each, then
    actor.disabled); enabling announces actor.enabled and brings none back."""
    bot = await h.make_actor(tenant, "service_account")
    issued = [await tenant.create(f"/v1/actors/{bot['id']}/client_tokens", {}) for _ in range(2)]
    r = await tenant.http.post(f"/v1/actors/{bot['id']}/disable")
    assert r.status_code == 200, r.text
    for token in issued:
        await recorder.expect("token", "revoked", token_id=token["id"], actor_id=bot["id"])
    await recorder.expect("actor", "disabled", actor_id=bot["id"])
    order = [(e.entity, e.action) for _, e in recorder.events]
    assert order.index(("actor", "disabled")) > max(
        i for i, pair in enumerate(order) if pair == ("token", "revoked")
    )
    r = await tenant.http.post(f"/v1/actors/{bot['id']}/enable")
    assert r.status_code == 200, r.text
    enabled = await recorder.expect("actor", "enabled", actor_id=bot["id"])
    assert enabled.account_id == tenant.account_id
    listed = (await tenant.http.get(f"/v1/actors/{bot['id']}/client_tokens")).json()["data"]
    assert listed == []


async def test_a_filter_change_announces_resource_updated(h, tenant, recorder):
    site = await h.make_site(tenant)
    resource = await h.make_resource(tenant, site["id"])
    r = await tenant.http.patch(
        f"/v1/resources/{resource['id']}", json={"filters": [{"protocol": "icmp"}]}
    )
    assert r.status_code == 200, r.text
    await recorder.expect("resource", "updated", resource_id=resource["id"], site_id=site["id"])


def test_the_event_model_lives_in_the_shared_library():
    """Signaling parses events without importing the api: the api publishes the
    shared model itself, whose docstring tables every event."""
    from zerogate.api import events
    from zerogate.common.messages import events as shared

    assert events.ChangeEvent is shared.ChangeEvent is ChangeEvent
    assert shared.__doc__ is not None
    for name in ("token.revoked", "actor.enabled", "actor.disabled", "resource.updated"):
        assert name in shared.__doc__
