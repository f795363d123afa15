"""The gateway's access table and its per-packet check."""

from __future__ import annotations

import ipaddress
import struct
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from zerogate.common.messages.api import ResourceView
from zerogate.common.messages.signaling import AuthorizationRef, ClientInfo
from zerogate.gateway.state import AccessTable

CLIENT = ClientInfo(id="c1", public_key="k" * 44, ipv4="100.64.0.5", ipv6="fd00:2021:1111::5")
OTHER = ClientInfo(id="c2", public_key="j" * 44, ipv4="100.64.0.6", ipv6="fd00:2021:1111::6")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _resource(rid: str, address: str, kind: str = "cidr") -> ResourceView:
    return ResourceView(id=rid, type=kind, address=address, name=rid, site_id="s")  # type: ignore[arg-type]


def _ref(client: ClientInfo, rid: str) -> AuthorizationRef:
    return AuthorizationRef(
        id=f"{client.id}-{rid}", account_id="a", client_id=client.id, resource_id=rid, token_id="t"
    )


def _v4(src: str, dst: str) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return header + bytes(8)


def _v6(src: str, dst: str) -> bytes:
    return struct.pack(
        "!IHBB16s16s", 6 << 28, 8, 17, 64,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    ) + bytes(8)  # fmt: skip


def _table() -> AccessTable:
    table = AccessTable()
    table.grant(
        CLIENT, _resource("net", "10.1.0.0/16"), _ref(CLIENT, "net"), NOW + timedelta(hours=1)
    )
    table.grant(CLIENT, _resource("v6", "fd00:5::/64"), _ref(CLIENT, "v6"), None)
    table.grant(OTHER, _resource("host", "10.9.9.9"), _ref(OTHER, "host"), NOW)
    return table


def test_a_client_reaches_only_its_own_resources() -> None:
    table = _table()
    assert table.accept(_v4("100.64.0.5", "10.1.2.3"))
    assert table.accept(_v6("fd00:2021:1111::5", "fd00:5::10"))
    assert not table.accept(_v4("100.64.0.5", "10.9.9.9"))  # the other client's resource
    assert not table.accept(_v4("100.64.0.5", "10.2.0.1"))
    assert table.accept(_v4("100.64.0.6", "10.9.9.9"))
    assert not table.accept(_v4("100.64.0.6", "10.9.9.8"))


def test_a_source_that_is_no_clients_address_is_dropped() -> None:
    table = _table()
    assert not table.accept(_v4("100.64.0.7", "10.1.2.3"))
    assert not table.accept(_v4("10.1.2.3", "10.1.2.4"))
    assert not table.accept(b"\x00" * 40)  # not IP at all


def test_revoking_the_last_grant_empties_the_client() -> None:
    table = _table()
    assert not table.revoke("c1", "net")
    assert not table.accept(_v4("100.64.0.5", "10.1.2.3"))
    assert table.accept(_v6("fd00:2021:1111::5", "fd00:5::10"))
    assert table.revoke("c1", "v6")
    assert "c1" not in table.clients
    assert not table.accept(_v6("fd00:2021:1111::5", "fd00:5::10"))


def test_expiry_is_found_without_the_control_plane() -> None:
    table = _table()
    assert table.next_expiry() == NOW
    assert table.expired(NOW) == [("c2", "host")]
    assert sorted(table.expired(NOW + timedelta(hours=2))) == [("c1", "net"), ("c2", "host")]


def test_a_reconnect_keeps_only_what_signaling_confirmed() -> None:
    table = _table()
    emptied = table.keep_only([_ref(CLIENT, "v6")])
    assert emptied == ["c2"]
    assert set(table.clients["c1"].grants) == {"v6"}
    assert not table.accept(_v4("100.64.0.5", "10.1.2.3"))


def test_dns_and_internet_resources_open_no_prefix_here() -> None:
    table = AccessTable()
    table.grant(CLIENT, _resource("dns", "app.example", "dns"), _ref(CLIENT, "dns"), None)
    assert not table.accept(_v4("100.64.0.5", "10.1.2.3"))


@given(st.binary(max_size=80))
def test_garbage_never_raises(data: bytes) -> None:
    assert _table().accept(data) in (True, False)
