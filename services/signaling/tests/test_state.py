"""Signaling's pure choices: which gateway, which client address, fresh secrets."""

from __future__ import annotations

import base64
import ipaddress
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from zerogate.common.messages.signaling import RelayInfo
from zerogate.signaling.state import (
    GatewayCandidate,
    choose_gateway,
    client_address,
    haversine_km,
    new_connection,
    refresh_due,
)

BERLIN = (52.52, 13.405)
PARIS = (48.8566, 2.3522)
TOKYO = (35.6762, 139.6503)
ICE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")  # RFC 8445 §5.3


def test_great_circle_distances() -> None:
    assert abs(haversine_km(BERLIN, PARIS) - 878) < 5  # about 878 km
    assert haversine_km(BERLIN, BERLIN) == 0


def test_a_gateway_the_client_is_connected_to_wins() -> None:
    near = GatewayCandidate("near", *BERLIN)
    far = GatewayCandidate("far", *TOKYO)
    for seed in range(20):
        pick = choose_gateway([near, far], connected=["far"], near=BERLIN, rng=random.Random(seed))
        assert pick == far


def test_else_the_nearest_located_gateway_wins() -> None:
    gateways = [GatewayCandidate("tokyo", *TOKYO), GatewayCandidate("paris", *PARIS),
                GatewayCandidate("nowhere")]  # fmt: skip
    for seed in range(20):
        assert choose_gateway(gateways, near=BERLIN, rng=random.Random(seed)).id == "paris"


def test_without_places_the_choice_is_random_among_all() -> None:
    gateways = [GatewayCandidate(str(i)) for i in range(4)]
    picks = {choose_gateway(gateways, rng=random.Random(seed)).id for seed in range(200)}
    assert picks == {"0", "1", "2", "3"}
    assert choose_gateway([], rng=random.Random(0)) is None


TRUSTED = [ipaddress.ip_network("10.0.0.0/8")]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    assert client_address("198.51.100.9", "203.0.113.5", TRUSTED) == "198.51.100.9"
    assert client_address("10.0.0.2", "203.0.113.5", TRUSTED) == "203.0.113.5"
    # the rightmost untrusted hop is the client, whatever a client wrote before it
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.1.1.1", TRUSTED) == "203.0.113.5"
    assert client_address("10.0.0.2", "garbage", TRUSTED) == "10.0.0.2"
    assert client_address(None, "203.0.113.5", TRUSTED) is None


@given(st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=5))
def test_an_untrusted_peer_is_never_replaced(hops: list[str]) -> None:
    assert client_address("198.51.100.9", ", ".join(hops), TRUSTED) == "198.51.100.9"


def test_fresh_secrets_follow_the_rfcs() -> None:
    one, two = new_connection(), new_connection()
    for conn in (one, two):
        assert len(base64.b64decode(conn.preshared_key.get_secret_value())) == 32
        for ice in (conn.client_ice, conn.gateway_ice):
            assert len(ice.ufrag) >= 4  # RFC 8445 §5.3
            assert len(ice.pwd.get_secret_value()) >= 22
            assert set(ice.ufrag + ice.pwd.get_secret_value()) <= ICE_CHARS
    assert one.preshared_key.get_secret_value() != two.preshared_key.get_secret_value()
    assert one.client_ice.ufrag != one.gateway_ice.ufrag
    assert "pwd" not in repr(one.client_ice) or "**" in repr(one.client_ice)


def test_credentials_are_refreshed_before_they_expire() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    relay = RelayInfo(
        id="r",
        addresses=["192.0.2.1:3478"],
        username="u",
        password=SecretStr("p"),
        realm="z",
        expires_at=now + timedelta(hours=24),
    )
    due = refresh_due([relay], now)
    assert due is not None
    assert now < due < now + timedelta(hours=24)
    assert due == now + timedelta(hours=18)
    assert refresh_due([], now) is None
