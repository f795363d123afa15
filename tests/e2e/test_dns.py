"""DNS resources, split tunnelling, filters and the Internet resource, in namespaces.

The lab of :mod:`zerogate.testing.ztna`, plus:

* the corporate resolver, a real dnsmasq, on the resource host (gateway LAN,
  ``172.16.5.10``), which the gateway's resolv.conf names; the client has no
  route to it;
* the client's upstream, another dnsmasq, on the client's NAT router
  (``10.10.1.1``, a home router's resolver), named by the client's resolv.conf
  (``/etc/netns/<ns>/resolv.conf``, bind-mounted as in a container);
* HTTP servers on the resource host (ports 8080, 8081) and on a host of the
  "internet" side (``198.18.0.80``), which log who connected.

One account serves every test; the client is ``zerogate up`` with its DNS
control left at ``auto`` (which picks the resolv.conf rewrite here).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogate.testing.dnsd import Dnsmasq, netns_resolv_conf
from zerogate.testing.lab import LabProcess, Namespace, NetLab, lab_unavailable_reason
from zerogate.testing.stack import Admin, script
from zerogate.testing.transfer import TcpTransfer
from zerogate.testing.ztna import RESOURCE_V4, RESOURCE_V6, Agent, ZtnaLab

pytestmark = [pytest.mark.netns, pytest.mark.slow]

_MISSING = lab_unavailable_reason("iptables", "dnsmasq", "curl")
if _MISSING is not None:
    pytest.skip(_MISSING, allow_module_level=True)

STUB_V4 = "100.100.111.1"  # DESIGN.md, "Addresses"
STUB_V6 = "fd00:2021:1111:8000:100:100:111:0"
PROXY_V4 = ipaddress.ip_network("100.96.0.0/11")
PROXY_V6 = ipaddress.ip_network("fd00:2021:1111:8000::/107")
ICMP_HOST = "172.16.5.11"  # a second address of the resource host
UPSTREAM = "10.10.1.1"  # the client's NAT router
INTERNET_HOST = "198.18.0.80"
ORIGINAL_RESOLV_CONF = f"# the lab's own\nnameserver {UPSTREAM}\nsearch lab.test\noptions edns0\n"
HTTP_OK, HTTP_FILTERED = 8080, 8081
#: The issue: a filtered port is refused in under 100 ms.
REFUSAL_MS = 100.0
CORP_RECORDS = {
    "app.corp.test": [RESOURCE_V4, RESOURCE_V6],
    "web.corp.test": [RESOURCE_V4],
    "a.b.corp.test": [RESOURCE_V4],
    "v4only.corp.test": [RESOURCE_V4],
    "filtered.corp.test": [RESOURCE_V4],
    "fresh.corp.test": [RESOURCE_V4],
    "app6.corp6.test": [RESOURCE_V6],
    "hidden.corp2.test": [RESOURCE_V4],
}
PUBLIC_RECORDS = {"www.public.test": [INTERNET_HOST]}


@dataclass
class DnsLab:
    lab: ZtnaLab
    admin: Admin
    corp: Dnsmasq
    upstream: Dnsmasq
    web: list[LabProcess]
    internet_web: LabProcess
    resolv_conf: Any
    site: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    group: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    gateway: Agent | None = None
    client: Agent | None = None
    token: str = ""

    @property
    def client_ns(self) -> Namespace:
        return self.lab.client

    def start_client(self, *args: str, interface: str | None = None, **env: str) -> Agent:
        agent = self.lab.start_client(self.token, interface=interface, args=args, **env)
        try:
            wait_for(lambda: (agent.status().get("dns") or {}).get("control"), what="client DNS")
        except AssertionError:
            raise AssertionError(
                f"client not up: {agent.status()}\n{agent.process.output()[-3000:]}"
            ) from None
        return agent


def wait_for(check: Any, *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _http_server(ns: Namespace, bind: str, port: int) -> LabProcess:
    argv = [sys.executable, "-u", "-m", "http.server", str(port), "--bind", bind]
    proc = ns.spawn(argv, label=f"http-{port}")
    wait_for(lambda: "Serving HTTP" in proc.output(), timeout=10, what="http.server")
    return proc


def _interface_of(ns: Namespace, address: str) -> str:
    links = json.loads(ns.run("ip", "-j", "addr").stdout)
    for link in links:
        if any(info.get("local") == address for info in link.get("addr_info", [])):
            return str(link["ifname"])
    raise LookupError(address)


@pytest.fixture(scope="module")
def dns_lab() -> Iterator[DnsLab]:
    with NetLab() as net:
        lab = ZtnaLab.build(net)
        res = lab.resource
        res.add_address(_interface_of(res, RESOURCE_V4), f"{ICMP_HOST}/24")
        lab.inet.add_address("lo", f"{INTERNET_HOST}/32")
        corp = Dnsmasq(
            res, [RESOURCE_V4], hosts=CORP_RECORDS, mx={"app.corp.test": "mail.corp.test"},
            txt={"app.corp.test": "corp-txt"}, local=["corp.test", "corp6.test", "corp2.test"],
        ).start()  # fmt: skip
        router = lab.client_site.router
        upstream = Dnsmasq(router, [UPSTREAM], hosts=PUBLIC_RECORDS, local=["public.test"])
        upstream.start()
        netns_resolv_conf(lab.gateway, f"nameserver {RESOURCE_V4}\n")
        resolv_conf = netns_resolv_conf(lab.client, ORIGINAL_RESOLV_CONF)
        web = [_http_server(res, "::", port) for port in (HTTP_OK, HTTP_FILTERED)]
        internet_web = _http_server(lab.inet, INTERNET_HOST, 80)
        admin = lab.start_control_plane(signaling=1, relays=1)
        env = DnsLab(lab, admin, corp, upstream, web, internet_web, resolv_conf)
        _deploy(env)
        yield env
        admin.close()


def _deploy(env: DnsLab) -> None:
    admin = env.admin
    site = admin.site()
    tcp_8080 = [{"protocol": "tcp", "ports": [str(HTTP_OK)]}]
    specs = {
        "exact": ("dns", "app.corp.test", {}),
        "star": ("dns", "*.corp.test", {}),
        "double": ("dns", "**.corp.test", {}),
        "filtered": ("dns", "filtered.corp.test", {"filters": tcp_8080}),
        "v6dns": ("dns", "app6.corp6.test", {"ip_stack": "ipv6_only"}),
        "v6cidr": ("cidr", "fd00:5::/64", {}),
        "icmp": ("ip", ICMP_HOST, {"filters": [*tcp_8080, {"protocol": "icmp"}]}),
        "hidden": ("dns", "hidden.corp2.test", {}),
    }
    env.site = site
    for key, (kind, address, extra) in specs.items():
        env.resources[key] = admin.resource(site, address, type=kind, name=key, **extra)
    env.account = admin.service_account()
    env.group = admin.group()
    admin.members(env.group, [env.account["id"]])
    for key, resource in env.resources.items():
        if key != "hidden":
            admin.policy(env.group, resource)
    env.gateway = env.lab.start_gateway(admin.gateway_token(site))
    env.token = admin.client_token(env.account)
    env.client = env.start_client()


# --------------------------------------------------------------------------- helpers


def curl(ns: Namespace, url: str, *extra: str, timeout: float = 10.0) -> tuple[int, str]:
    """``curl`` from ``ns`` (names resolved as the host does): (HTTP status or 0, stderr)."""
    done = ns.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
        *extra, url, check=False, timeout=timeout + 5,
    )  # fmt: skip
    code = int(done.stdout.strip()) if done.stdout.strip().isdigit() else 0
    return code, done.stderr.strip()


def timed_connect(
    ns: Namespace, address: str, port: int, timeout: float = 5.0
) -> tuple[str, float]:
    """A TCP connect from ``ns``: ("ok" or the error's name, milliseconds)."""

    def go() -> tuple[str, float]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            started = time.perf_counter()
            try:
                sock.connect((address, port))
                outcome = "ok"
            except OSError as exc:
                outcome = type(exc).__name__ if exc.errno is None else errno_name(exc.errno)
            return outcome, (time.perf_counter() - started) * 1000

    return ns.call(go)


def errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(number, str(number))


def query(ns: Namespace, name: str, rdtype: str = "A", *, server: str = STUB_V4,
          tcp: bool = False, timeout: float = 5.0) -> dns.message.Message:  # fmt: skip
    """A query from inside ``ns`` to ``server`` (the stub by default)."""
    message = dns.message.make_query(name, rdtype)

    def go() -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, server, timeout=timeout)
        return dns.query.udp(message, server, timeout=timeout)

    return ns.call(go)


def addresses_of(answer: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in answer.answer if rrset.rdtype in (1, 28) for r in rrset)


def in_proxy_range(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip in (PROXY_V4 if ip.version == 4 else PROXY_V6)


def name_state(agent: Agent, name: str) -> dict[str, Any]:
    names = (agent.status().get("dns") or {}).get("names") or []
    return next((n for n in names if n["name"] == name), {})


# --------------------------------------------------------------------------- item 9


@pytest.mark.parametrize(
    ("name", "resource"),
    [("app.corp.test", "exact"), ("web.corp.test", "star"), ("a.b.corp.test", "double")],
)
def test_curl_reaches_the_resource_host_by_name(dns_lab: DnsLab, name: str, resource: str) -> None:
    code, err = curl(dns_lab.client_ns, f"http://{name}:{HTTP_OK}/")
    assert code == 200, err
    state = name_state(dns_lab.client, name)
    assert state["resource_id"] == dns_lab.resources[resource]["id"]
    assert state["gateway_id"]
    assert all(in_proxy_range(a) for a in state["proxy_ips"])
    # the gateway asked the corporate resolver, from its LAN address
    assert name in dns_lab.corp.queries()


def test_the_corporate_resolver_is_reachable_only_through_the_gateway(dns_lab: DnsLab) -> None:
    corp_log = dns_lab.corp.process.output() if dns_lab.corp.process else ""
    assert "from 10.10.1." not in corp_log
    assert "from 198.18.1." not in corp_log
    with pytest.raises(dns.exception.Timeout):
        query(dns_lab.client_ns, "app.corp.test", server=RESOURCE_V4, timeout=1.0)
    # the client's own upstream knows nothing of the corporate names
    assert dns_lab.upstream.ask(UPSTREAM, "app.corp.test")[3] & 0x0F != 0  # NXDOMAIN


# --------------------------------------------------------------------------- item 3


def test_the_stub_answers_resource_names_with_four_and_four_stable_proxy_addresses(
    dns_lab: DnsLab,
) -> None:
    ns = dns_lab.client_ns
    for server in (STUB_V4, STUB_V6):
        a = query(ns, "App.Corp.Test", "A", server=server)
        aaaa = query(ns, "app.corp.test", "AAAA", server=server, tcp=True)
        assert len(addresses_of(a)) == 4
        assert len(addresses_of(aaaa)) == 4
        assert all(in_proxy_range(x) for x in addresses_of(a) + addresses_of(aaaa))
        assert {rrset.ttl for rrset in a.answer + aaaa.answer} == {1}
        assert str(a.question[0].name) == "App.Corp.Test."  # the case as asked
    again = query(ns, "app.corp.test", "A")
    assert addresses_of(again) == addresses_of(a)
    state = name_state(dns_lab.client, "app.corp.test")
    assert sorted(state["proxy_ips"]) == sorted(addresses_of(a) + addresses_of(aaaa))


def test_the_ip_stack_limits_the_families_answered(dns_lab: DnsLab) -> None:
    ns = dns_lab.client_ns
    assert addresses_of(query(ns, "app6.corp6.test", "A")) == []
    assert len(addresses_of(query(ns, "app6.corp6.test", "AAAA"))) == 4


def test_other_types_of_resource_names_come_from_the_gateways_resolver(dns_lab: DnsLab) -> None:
    ns = dns_lab.client_ns
    mx = query(ns, "app.corp.test", "MX")
    assert [str(r.exchange) for rrset in mx.answer for r in rrset] == ["mail.corp.test."]
    txt = query(ns, "app.corp.test", "TXT", tcp=True)
    assert [b"".join(r.strings) for rrset in txt.answer for r in rrset] == [b"corp-txt"]
    assert "app.corp.test" in dns_lab.corp.queries()


def test_other_names_go_upstream_and_proxy_addresses_answer_ptr(dns_lab: DnsLab) -> None:
    ns = dns_lab.client_ns
    public = query(ns, "www.public.test", "A")
    assert addresses_of(public) == [INTERNET_HOST]
    before = dns_lab.upstream.queries().count("www.public.test")
    for _ in range(5):
        assert addresses_of(query(ns, "www.public.test", "A")) == [INTERNET_HOST]
    assert dns_lab.upstream.queries().count("www.public.test") == before  # cached
    missing = query(ns, "nothing.public.test", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    # a resource the client may not see is just another name: upstream, which knows nothing
    hidden = query(ns, "hidden.corp2.test", "A")
    assert addresses_of(hidden) == []
    assert "hidden.corp2.test" not in dns_lab.corp.queries()
    proxy = addresses_of(query(ns, "app.corp.test", "A"))[0]
    ptr = query(ns, dns.reversename.from_address(proxy).to_text(), "PTR")
    assert [str(r.target) for rrset in ptr.answer for r in rrset] == ["app.corp.test."]
    unknown = dns.reversename.from_address("100.127.255.254").to_text()
    assert query(ns, unknown, "PTR").rcode() == dns.rcode.NXDOMAIN


# --------------------------------------------------------------------------- item 10


def test_a_filtered_port_is_refused_at_once_an_allowed_one_works_and_icmp_per_filter(
    dns_lab: DnsLab,
) -> None:
    ns = dns_lab.client_ns
    code, err = curl(ns, f"http://filtered.corp.test:{HTTP_OK}/", "-4")
    assert code == 200, err
    proxy = addresses_of(query(ns, "filtered.corp.test", "A"))[0]
    outcome, ms = timed_connect(ns, proxy, HTTP_FILTERED)
    assert outcome == "EHOSTUNREACH", outcome  # ICMP administratively prohibited
    assert ms < REFUSAL_MS, ms
    code, err = curl(ns, f"http://filtered.corp.test:{HTTP_FILTERED}/", "-4", timeout=5)
    assert code == 0, err
    assert timed_connect(ns, ICMP_HOST, HTTP_OK)[0] == "ok"
    outcome, ms = timed_connect(ns, ICMP_HOST, HTTP_FILTERED)
    assert outcome == "EHOSTUNREACH", outcome
    assert ms < REFUSAL_MS, ms
    # ICMP: the ip resource's filter allows it, the DNS resource's does not
    assert dns_lab.client.ping(ICMP_HOST, count=1)["replies"][0] is not None
    assert dns_lab.client.ping(proxy, count=1, timeout=2)["replies"] == [None]


# --------------------------------------------------------------------------- item 5


def test_the_first_packet_to_a_proxy_address_sets_the_name_up_and_is_not_lost(
    dns_lab: DnsLab,
) -> None:
    ns = dns_lab.client_ns
    proxy = addresses_of(query(ns, "fresh.corp.test", "A"))[0]
    assert not name_state(dns_lab.client, "fresh.corp.test").get("gateway_id")
    outcome, ms = timed_connect(ns, proxy, HTTP_OK)
    # A lost SYN is sent again after 1 s (RFC 6298's initial RTO): the first one made it.
    assert outcome == "ok", outcome
    assert ms < 1000, ms
    state = name_state(dns_lab.client, "fresh.corp.test")
    assert state["gateway_id"]
    assert state["resource_id"] == dns_lab.resources["star"]["id"]
    assert "fresh.corp.test" in dns_lab.corp.queries()


# --------------------------------------------------------------------------- item 12


def test_an_ipv6_dns_resource_and_an_ipv6_cidr_resource_work(dns_lab: DnsLab) -> None:
    ns = dns_lab.client_ns
    code, err = curl(ns, f"http://app6.corp6.test:{HTTP_OK}/")
    assert code == 200, err
    assert name_state(dns_lab.client, "app6.corp6.test")["gateway_id"]
    code, err = curl(ns, f"http://[{RESOURCE_V6}]:{HTTP_OK}/")
    assert code == 200, err


def _icmp_answer(
    ns: Namespace, address: str, port: int, timeout: float = 5.0
) -> tuple[int, int, str]:
    """Send a UDP datagram to ``address`` from ``ns``; the ICMP error that comes back:
    (type, code, its source)."""

    def go() -> tuple[int, int, str]:
        v6 = ":" in address
        family = socket.AF_INET6 if v6 else socket.AF_INET
        proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
        with (
            socket.socket(family, socket.SOCK_RAW, proto) as raw,
            socket.socket(family, socket.SOCK_DGRAM) as udp,
        ):
            raw.settimeout(0.2)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                udp.sendto(b"probe", (address, port))
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    try:
                        data, source = raw.recvfrom(65535)
                    except TimeoutError:
                        continue
                    body = data if v6 else data[(data[0] & 0x0F) * 4 :]
                    if (v6 and body[0] < 128) or (not v6 and body[0] in (3, 11)):
                        return body[0], body[1], str(source[0]).split("%")[0]
            raise AssertionError(f"no ICMP answer from {address}")

    return ns.call(go)


def test_a_name_with_only_ipv4_records_answers_aaaa_and_its_ipv6_proxies_are_unreachable(
    dns_lab: DnsLab,
) -> None:
    ns = dns_lab.client_ns
    six = addresses_of(query(ns, "v4only.corp.test", "AAAA"))
    assert len(six) == 4
    assert all(in_proxy_range(a) for a in six)
    kind, code, source = _icmp_answer(ns, six[0], 9)
    assert (kind, code) == (1, 3)  # ICMPv6 destination unreachable: address (RFC 4443 §3.1)
    assert source == six[0]
    # its IPv4 proxies work
    four = addresses_of(query(ns, "v4only.corp.test", "A"))
    assert timed_connect(ns, four[0], HTTP_OK)[0] == "ok"


# --------------------------------------------------------------------------- item 7


def test_a_filter_change_applies_to_a_running_flow_within_a_second(dns_lab: DnsLab) -> None:
    ns = dns_lab.client_ns
    resource = dns_lab.resources["filtered"]
    port = 9100
    path = f"/v1/resources/{resource['id']}"
    both = [{"protocol": "tcp", "ports": [str(HTTP_OK), str(port)]}]
    dns_lab.admin.call("PATCH", path, {"filters": both}, expect=200)
    proxy = addresses_of(query(ns, "filtered.corp.test", "A"))[0]
    # allowed now: nothing listens yet, so the host itself refuses (RST)
    wait_for(lambda: timed_connect(ns, proxy, port)[0] == "ECONNREFUSED", what="the filter")
    transfer = TcpTransfer(
        ns, dns_lab.lab.resource, RESOURCE_V4, port, 10 * 1024**3, download=True,
        idle_timeout=30.0, connect_to=proxy,
    ).start()  # fmt: skip
    try:
        wait_for(lambda: transfer.received > 2 * 1024 * 1024, timeout=30, what="2 MB")
        dns_lab.admin.call(
            "PATCH", path, {"filters": [{"protocol": "tcp", "ports": [str(HTTP_OK)]}]}, expect=200
        )
        changed = time.monotonic()
        time.sleep(1.0)
        after = transfer.received
        time.sleep(2.0)
        assert transfer.received == after, (
            f"{transfer.received - after} bytes still arrived {time.monotonic() - changed:.1f} s"
            " after the filter change"
        )
        assert timed_connect(ns, proxy, port)[0] == "EHOSTUNREACH"
        assert timed_connect(ns, proxy, HTTP_OK)[0] == "ok"
    finally:
        transfer.abort()


# --------------------------------------------------------------------------- item 1


def _our_routes(ns: Namespace, interface: str) -> set[str]:
    """Routes through the TUN that the client made (not the kernel's own)."""
    out: set[str] = set()
    for family in ("-4", "-6"):
        done = ns.run("ip", "-j", family, "route", "show", "dev", interface, check=False)
        for route in json.loads(done.stdout or "[]"):
            if route.get("protocol") == "kernel":
                continue
            dst = route["dst"]
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            out.add(str(ipaddress.ip_network(dst)))
    return out


def test_the_tunnel_routes_only_resources_proxy_ranges_and_the_stub_and_follows_changes(
    dns_lab: DnsLab,
) -> None:
    ns, agent = dns_lab.client_ns, dns_lab.client
    assert agent is not None
    expected = {
        "fd00:5::/64",  # the IPv6 CIDR resource
        f"{ICMP_HOST}/32",  # the ip resource
        str(PROXY_V4), str(PROXY_V6), f"{STUB_V4}/32", f"{STUB_V6}/128",
    }  # fmt: skip
    found = _our_routes(ns, agent.interface)
    gateways = {
        f"{g[key]}/{bits}"
        for g in agent.status()["gateways"]
        for key, bits in (("ipv4", 32), ("ipv6", 128))
    }
    # plus the tunnel addresses of the gateways in use (their DNS servers)
    assert found == expected | gateways, found ^ (expected | gateways)
    assert not any(r.endswith("/0") for r in found)
    # a new resource is routed at once, without a restart; a deleted one goes
    extra = dns_lab.admin.resource(dns_lab.site, "10.77.0.0/16", name="later")
    policy = dns_lab.admin.policy(dns_lab.group, extra)
    wait_for(lambda: "10.77.0.0/16" in _our_routes(ns, agent.interface), what="the new route")
    narrower = dns_lab.admin.resource(dns_lab.site, "10.77.1.0/24", name="narrower")
    dns_lab.admin.policy(dns_lab.group, narrower)
    wait_for(lambda: "10.77.1.0/24" in _our_routes(ns, agent.interface), what="a nested route")
    route = ns.run("ip", "-j", "route", "get", "10.77.1.5").stdout
    assert json.loads(route)[0]["dev"] == agent.interface
    dns_lab.admin.delete_policy(policy)
    dns_lab.admin.call("DELETE", f"/v1/resources/{extra['id']}", expect=204)
    dns_lab.admin.call("DELETE", f"/v1/resources/{narrower['id']}", expect=204)
    wait_for(
        lambda: not {"10.77.0.0/16", "10.77.1.0/24"} & _our_routes(ns, agent.interface),
        what="the routes to go",
    )


# --------------------------------------------------------------------------- item 11


def _resolv_conf(env: DnsLab) -> str:
    return str(env.resolv_conf.read_text())


def _stub_in_place(env: DnsLab) -> bool:
    return f"nameserver {STUB_V4}" in _resolv_conf(env)


def _down(env: DnsLab, agent: Agent) -> None:
    env.client_ns.run(
        script("zerogate"), "--control-socket", str(agent.control_socket), "down", timeout=20
    )
    agent.process.popen.wait(20)


def test_the_host_dns_comes_back_after_down_sigterm_and_a_crash(dns_lab: DnsLab) -> None:
    env = dns_lab
    assert env.client is not None
    interface = env.client.interface
    assert _stub_in_place(env)
    proxies = addresses_of(query(env.client_ns, "app.corp.test", "A"))
    text = env.client_ns.run(
        script("zerogate"), "--control-socket", str(env.client.control_socket), "status"
    ).stdout
    assert f"dns:        {STUB_V4} {STUB_V6} (etc-resolv-conf)" in text, text
    # SIGTERM
    env.client.process.stop()
    assert _resolv_conf(env) == ORIGINAL_RESOLV_CONF
    assert not env.client_ns.link_exists(interface)  # routes went with the TUN
    # zerogate down; a name that is no resource's resolves through the upstream meanwhile
    agent = env.start_client(interface=interface)
    assert _stub_in_place(env)
    code, err = curl(env.client_ns, "http://www.public.test/")
    assert code == 200, err
    # a name keeps its proxy addresses from one run to the next
    assert addresses_of(query(env.client_ns, "app.corp.test", "A")) == proxies
    _down(env, agent)
    assert _resolv_conf(env) == ORIGINAL_RESOLV_CONF
    assert not env.client_ns.link_exists(interface)
    # SIGKILL, then a start on the same interface puts it back before anything else
    crashed = env.start_client(interface=interface)
    crashed.process.kill()
    assert _stub_in_place(env)  # nothing could undo it
    after = env.start_client(interface=interface)
    assert "undid what a crashed run left" in after.process.output()
    after.process.stop()
    assert _resolv_conf(env) == ORIGINAL_RESOLV_CONF
    env.client = env.start_client(interface=interface)


# --------------------------------------------------------------------------- items 2, 8, 13


def _rules(ns: Namespace) -> list[str]:
    out = []
    for family in ("-4", "-6"):
        for line in ns.run("ip", family, "rule", "show").stdout.splitlines():
            if re.match(r"^520[0-2]:", line):  # zerogate.dataplane.policy.PRIORITY
                out.append(f"{family} {line.strip()}")
    return out


def _route_dev(ns: Namespace, address: str, *extra: str) -> str:
    return str(json.loads(ns.run("ip", "-j", "route", "get", address, *extra).stdout)[0]["dev"])


def test_the_internet_resource_sends_everything_else_through_the_gateway(dns_lab: DnsLab) -> None:
    env = dns_lab
    assert env.client is not None
    interface = env.client.interface
    ns = env.client_ns
    internet = env.admin.resource(env.site, None, type="internet", name="internet")
    policy = env.admin.policy(env.group, internet)
    env.client.process.stop()
    agent = env.start_client("--internet", interface=interface)
    try:
        wait_for(lambda: (agent.status().get("internet") or {}).get("routing"), what="rules")
        # per family: main without defaults, the tunnel for unmarked packets; and one
        # rule keeping the control plane (IPv4 here) outside
        assert len(_rules(ns)) == 5, _rules(ns)
        assert _route_dev(ns, INTERNET_HOST) == interface
        code, err = curl(ns, f"http://{INTERNET_HOST}/")
        assert code == 200, err
        log = env.internet_web.output()
        gateway_nat = env.lab.gateway_site.public_ip
        assert f"{gateway_nat} - -" in log.splitlines()[-1], log[-500:]
        # the control plane, the relays and the gateway's underlay stay outside
        lan = _route_dev(ns, "198.18.0.2")
        assert lan != interface
        assert _route_dev(ns, "198.18.0.11", "mark", "0x5a47") == lan
        status = agent.status()
        assert status["state"] == "connected"
        path = status["gateways"][0]
        assert path["remote"].startswith(f"{gateway_nat}:")
        assert agent.ping(ICMP_HOST)["replies"][0] is not None
        # a crash leaves the rules; the next start removes them before adding its own
        agent.process.kill()
        assert _rules(ns)
        agent = env.start_client("--internet", interface=interface)
        wait_for(lambda: (agent.status().get("internet") or {}).get("routing"), what="rules")
        assert len(_rules(ns)) == 5, _rules(ns)
        # revoking the Internet resource ends that access at once: the policy now asks
        # for a network the client is not in (the resource stays visible, still routed)
        assert curl(ns, f"http://{INTERNET_HOST}/")[0] == 200
        elsewhere = [
            {"property": "remote_ip", "operator": "is_in_cidr", "values": ["192.0.2.0/24"]}
        ]
        ended = env.gateway.process.output().count('"access ended"')
        env.admin.call("PATCH", f"/v1/policies/{policy['id']}", {"conditions": elsewhere},
                       expect=200)  # fmt: skip
        wait_for(lambda: env.gateway.process.output().count('"access ended"') > ended,
                 what="the revocation")  # fmt: skip
        state = next(r for r in agent.status()["resources"] if r["id"] == internet["id"])
        assert state["access"] == "refused", state
        outcome, ms = timed_connect(ns, INTERNET_HOST, 80)
        assert outcome == "EHOSTUNREACH", outcome
        assert ms < REFUSAL_MS, ms
        assert _route_dev(ns, INTERNET_HOST) == interface
        env.admin.delete_policy(policy)  # not visible any more: the default routes go
        wait_for(lambda: not _rules(ns), what="the rules to go")
        agent.process.stop()
        assert _rules(ns) == []
        assert not ns.link_exists(interface)
        assert _resolv_conf(env) == ORIGINAL_RESOLV_CONF
    finally:
        if agent.process.alive():
            agent.process.stop()
        env.admin.call("DELETE", f"/v1/resources/{internet['id']}", expect=204)
        env.client = env.start_client(interface=interface)


# --------------------------------------------------------------------------- item 14

VISIBLE_PATTERNS = [
    ("exact", "app.corp.test"), ("star", "*.corp.test"), ("double", "**.corp.test"),
    ("filtered", "filtered.corp.test"), ("v6dns", "app6.corp6.test"),
]  # fmt: skip
NAMES = [
    "app.corp.test", "web.corp.test", "a.b.corp.test", "corp.test", "filtered.corp.test",
    "app6.corp6.test", "hidden.corp2.test", "app.corp2.test", "corp6.test", "x.app6.corp6.test",
    "www.public.test", "nothing.public.test", "example.test", "4.3.96.100.in-addr.arpa",
]  # fmt: skip
_label = st.text(alphabet="abcxyz019-_*?", min_size=1, max_size=12)
_name = st.one_of(
    st.sampled_from(NAMES),
    st.lists(_label, min_size=1, max_size=5).map(lambda ls: ".".join([*ls, "corp", "test"])),
    st.lists(_label, min_size=1, max_size=5).map(".".join),
)
_rdtype = st.one_of(st.sampled_from([1, 28, 15, 16, 12, 33, 255, 5, 6]), st.integers(0, 65535))


def _case(name: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if f else c for c, f in zip(name, flips + [False] * len(name), strict=False)
    )


def _exchange(ns: Namespace, wire: bytes, timeout: float) -> bytes | None:
    def go() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(wire, (STUB_V4, 53))
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

    return ns.call(go)


def _check_answer(data: bytes | None) -> None:
    """No proxy address for a name no visible resource matches; no corporate address."""
    from zerogate.proto.dns.names import NameMatcher

    if data is None:
        return
    try:
        answer = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return
    visible = NameMatcher(VISIBLE_PATTERNS)
    for rrset in answer.answer:
        if rrset.rdtype not in (1, 28):
            continue
        owner = rrset.name.to_text(omit_final_dot=True)
        for record in rrset:
            address = ipaddress.ip_address(record.address)
            if in_proxy_range(str(address)):
                assert visible.match(owner) is not None, (owner, address)
            assert address not in ipaddress.ip_network("172.16.5.0/24"), (owner, address)
            assert address not in ipaddress.ip_network("fd00:5::/64"), (owner, address)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_name, _rdtype, st.lists(st.booleans(), max_size=40), st.booleans())
def test_random_queries_never_crash_the_stub_nor_reveal_hidden_names(
    dns_lab: DnsLab, name: str, rdtype: int, flips: list[bool], edns: bool
) -> None:
    try:
        message = dns.message.make_query(_case(name, flips), rdtype, use_edns=0 if edns else False)
    except (dns.exception.DNSException, ValueError):
        return
    _check_answer(_exchange(dns_lab.client_ns, message.to_wire(), 2.0))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(NAMES), st.sampled_from([1, 28, 15, 16, 12]),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
    st.integers(0, 90), st.binary(max_size=20),
)  # fmt: skip
def test_mutated_queries_never_crash_the_stub_nor_reveal_hidden_names(
    dns_lab: DnsLab, name: str, rdtype: int, edits: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    wire = bytearray(dns.message.make_query(name, rdtype).to_wire())
    for offset, value in edits:
        if offset < len(wire):
            wire[offset] = value
    mutated = bytes(wire[: max(cut, 1)] if cut < len(wire) else wire) + tail
    _check_answer(_exchange(dns_lab.client_ns, mutated, 0.5))


def test_the_stub_still_answers_after_the_fuzzing(dns_lab: DnsLab) -> None:
    assert dns_lab.client is not None
    assert dns_lab.client.process.alive()
    assert len(addresses_of(query(dns_lab.client_ns, "app.corp.test", "A"))) == 4
