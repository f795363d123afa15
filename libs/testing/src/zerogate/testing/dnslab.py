"""The end-to-end lab with DNS: resolvers, resolv.confs and a deployment of DNS resources.

:func:`dns_deployment` takes a built :class:`~zerogate.testing.ztna.ZtnaLab`
and adds the corporate resolver (a :class:`~zerogate.testing.dnsd.Dnsmasq` on
the resource host, ``172.16.5.10``, named by the gateway's resolv.conf), the
client's upstream (another on the client's NAT router, ``10.10.1.1``, named
by the client's resolv.conf), then an account with the given resources, one
group and policy per resource, a gateway and a client (``zerogate up``). For
benchmarks; the end-to-end tests build theirs the same way in the open.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zerogate.testing.dnsd import Dnsmasq, netns_resolv_conf
from zerogate.testing.stack import Admin
from zerogate.testing.ztna import RESOURCE_V4, Agent, ZtnaLab

CORP_RESOLVER = RESOURCE_V4
CLIENT_UPSTREAM = "10.10.1.1"


@dataclass
class DnsDeployment:
    lab: ZtnaLab
    admin: Admin
    corp: Dnsmasq
    upstream: Dnsmasq
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateway: Agent | None = None
    client: Agent | None = None

    def wait_client_dns(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until the client's stub answers and the host's DNS points at it."""
        assert self.client is not None
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.client.status()
            if (status.get("dns") or {}).get("control"):
                return status
            time.sleep(0.2)
        raise RuntimeError(f"the client's DNS is not up: {status}")


def dns_deployment(
    lab: ZtnaLab,
    *,
    resources: Mapping[str, tuple[str, str | None, Mapping[str, Any]]],
    corp_records: Mapping[str, Sequence[str]],
    public_records: Mapping[str, Sequence[str]],
) -> DnsDeployment:
    """Resolvers, resources (``key -> (type, address, extra fields)``) and both agents."""
    domains = sorted({name.split(".", 1)[1] for name in corp_records if "." in name})
    corp = Dnsmasq(
        lab.resource, [CORP_RESOLVER], hosts=corp_records, local=domains, log_queries=False
    ).start()
    upstream = Dnsmasq(
        lab.client_site.router, [CLIENT_UPSTREAM], hosts=public_records, log_queries=False
    ).start()
    netns_resolv_conf(lab.gateway, f"nameserver {CORP_RESOLVER}\n")
    netns_resolv_conf(lab.client, f"nameserver {CLIENT_UPSTREAM}\n")
    admin = lab.start_control_plane(signaling=1, relays=1, traces=False)
    dep = DnsDeployment(lab, admin, corp, upstream)
    site = admin.site()
    for key, (kind, address, extra) in resources.items():
        fields = {"type": kind, "name": key, **dict(extra)}
        dep.resources[key] = admin.resource(site, address, **fields)  # type: ignore[arg-type]
    account = admin.service_account()
    group = admin.group()
    admin.members(group, [account["id"]])
    for resource in dep.resources.values():
        admin.policy(group, resource)
    dep.gateway = lab.start_gateway(admin.gateway_token(site))
    dep.client = lab.start_client(admin.client_token(account))
    dep.wait_client_dns()
    return dep
