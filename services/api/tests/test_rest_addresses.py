"""Resource addresses an outside probe got created with 201 (issue 8): IPv6 forms
that reach loopback, and DNS wildcards over a public suffix."""

from __future__ import annotations

import pytest

LOOPBACK_THROUGH_IPV6 = [
    ("cidr", "64:ff9b::7f00:1/128"),  # NAT64 (RFC 6052)
    ("cidr", "64:ff9b::/96"),  # holds NAT64 of loopback
    ("cidr", "2002:7f00:1::/48"),  # 6to4 (RFC 3056)
    ("cidr", "::ffff:0:7f00:1/128"),  # SIIT (RFC 2765)
    ("ip", "2001:0:4136:e378:8000:63bf:80ff:fffe"),  # Teredo, client 127.0.0.1
    ("cidr", "::ffff:127.0.0.1/128"),  # IPv4-mapped, refused before too
]


@pytest.mark.parametrize(("rtype", "address"), LOOPBACK_THROUGH_IPV6)
async def test_addresses_reaching_loopback_through_ipv6_are_refused(h, tenant, rtype, address):
    site = await h.make_site(tenant)
    body = {"type": rtype, "address": address, "name": "probe", "site_id": site["id"]}
    problem = h.assert_problem(await tenant.http.post("/v1/resources", json=body), 422)
    assert problem["detail"].startswith("address: ")
    assert problem["errors"][0]["loc"] == ["body", "address"]
    # Moving an existing resource there is refused the same way.
    resource = await h.make_resource(tenant, site["id"], type=rtype, address=_public(rtype))
    moved = await tenant.http.patch(f"/v1/resources/{resource['id']}", json={"address": address})
    h.assert_problem(moved, 422)


def _public(rtype: str) -> str:
    return "2606:4700::1111" if rtype == "ip" else "2606:4700::/32"


PUBLIC_SUFFIX_WILDCARDS = [
    "**.co.uk",
    "*.co.uk",
    "**.github.io",  # the list's private section counts
    "**.blogspot.com",
    "**.amazonaws.com",  # lies above the public suffix s3.amazonaws.com
    "*.amazonaws.com",
    "**.ninja",
    "**.рф",
    "**.xn--p1ai",
    "*.com",
]


@pytest.mark.parametrize("pattern", PUBLIC_SUFFIX_WILDCARDS)
async def test_wildcards_over_a_public_suffix_are_refused(h, tenant, pattern):
    site = await h.make_site(tenant)
    body = {"type": "dns", "address": pattern, "name": "probe", "site_id": site["id"]}
    problem = h.assert_problem(await tenant.http.post("/v1/resources", json=body), 422)
    assert problem["detail"].startswith("address: ")
    assert "public suffix" in problem["detail"]


@pytest.mark.parametrize(
    "pattern", ["**.example.co.uk", "*.corp.example.com", "**.mybucket.s3.amazonaws.com", "co.uk"]
)
async def test_wildcards_below_a_registrable_domain_stay_accepted(h, tenant, pattern):
    site = await h.make_site(tenant)
    await h.make_resource(tenant, site["id"], type="dns", address=pattern)
