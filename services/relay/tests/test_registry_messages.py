"""Bus models of the relay registry: validation, secrets, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zerogate.common.messages.relay import (
    MAX_SELECT_COUNT,
    RelayAddress,
    RelayHeartbeat,
    RelayOffer,
    RelaySelectReply,
    RelaySelectRequest,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def heartbeat(**over) -> RelayHeartbeat:
    fields = {
        "relay_id": "relay-fra-1",
        "public_ipv4": ["203.0.113.7"],
        "public_ipv6": ["2001:db8::7"],
        "port": 3478,
        "realm": "zerogate",
        "lat": 50.11,
        "lon": 8.68,
        "load": 3,
        "auth_secret": "very-secret",
        "version": "0.1.0",
        "interval_s": 5.0,
        "sent_at": NOW,
    }
    fields.update(over)
    return RelayHeartbeat.model_validate(fields)


def test_heartbeat_secret_crosses_the_wire_but_never_prints():
    h = heartbeat()
    assert "very-secret" not in repr(h)
    assert "very-secret" not in str(h)
    assert "very-secret" not in str(h.model_dump())
    wire = h.model_dump_json()
    assert json.loads(wire)["auth_secret"] == "very-secret"
    back = RelayHeartbeat.model_validate_json(wire)
    assert back == h
    assert back.auth_secret.get_secret_value() == "very-secret"


def test_heartbeat_addresses_ipv4_first_ipv6_bracketed():
    h = heartbeat()
    assert [str(a) for a in h.addresses] == ["203.0.113.7:3478", "[2001:db8::7]:3478"]
    assert [a.family for a in h.addresses] == [4, 6]


def test_heartbeat_ignores_unknown_fields_and_normalises_ips():
    h = heartbeat(extra_field="from a newer relay", public_ipv6=["2001:DB8:0::7"])
    assert h.public_ipv6 == ["2001:db8::7"]


@pytest.mark.parametrize(
    "over",
    [
        {"public_ipv4": ["2001:db8::1"]},
        {"public_ipv6": ["203.0.113.1"]},
        {"public_ipv4": ["300.1.1.1"]},
        {"public_ipv4": [], "public_ipv6": []},
        {"lat": 50.0, "lon": None},
        {"lat": 91.0},
        {"lon": -181.0},
        {"port": 0},
        {"port": 65536},
        {"load": -1},
        {"interval_s": 0},
        {"auth_secret": ""},
        {"relay_id": "has space"},
        {"relay_id": "a.b:c"},
        {"sent_at": datetime(2026, 1, 1)},  # naive
    ],
)
def test_heartbeat_rejects_bad_fields(over):
    with pytest.raises(ValidationError):
        heartbeat(**over)


def test_select_request_defaults_and_pairs():
    req = RelaySelectRequest(for_id="client-1")
    assert req.count == 2
    assert req.ip is None
    assert RelaySelectRequest(for_id="c", country="de").country == "DE"
    with pytest.raises(ValidationError):
        RelaySelectRequest(for_id="c", lat=1.0)
    with pytest.raises(ValidationError):
        RelaySelectRequest(for_id="c", count=0)
    with pytest.raises(ValidationError):
        RelaySelectRequest(for_id="c", count=MAX_SELECT_COUNT + 1)
    with pytest.raises(ValidationError):
        RelaySelectRequest(for_id="c", ip="999.1.1.1")
    with pytest.raises(ValidationError):
        RelaySelectRequest(for_id="has:colon")


def test_offer_password_on_wire_only():
    offer = RelayOffer(
        relay_id="r",
        addresses=[RelayAddress(host="203.0.113.7", port=3478)],
        realm="zerogate",
        username="1764072000:client-1",
        password="pw-secret",
        expires_at=NOW,
        distance_km=12.5,
    )
    assert "pw-secret" not in repr(offer)
    reply = RelaySelectReply(offers=[offer])
    wire = reply.model_dump_json()
    assert json.loads(wire)["offers"][0]["password"] == "pw-secret"
    assert RelaySelectReply.model_validate_json(wire) == reply


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_request_dicts = st.fixed_dictionaries(
    {},
    optional={
        "ip": st.one_of(st.ip_addresses().map(str), _json_values),
        "lat": st.one_of(st.floats(allow_nan=True, allow_infinity=True), _json_values),
        "lon": st.one_of(st.floats(allow_nan=True, allow_infinity=True), _json_values),
        "country": st.one_of(st.text(max_size=3), _json_values),
        "count": st.one_of(st.integers(-5, 40), _json_values),
        "for_id": st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True), _json_values),
        "expires_at": st.one_of(st.datetimes().map(str), st.text(max_size=30), _json_values),
    },
)


@settings(max_examples=400, deadline=None)
@given(_request_dicts)
def test_select_request_validates_or_refuses_never_crashes(data):
    raw = json.dumps(data)
    try:
        req = RelaySelectRequest.model_validate_json(raw)
    except ValidationError:
        return
    # What validates is self-consistent.
    assert 1 <= req.count <= MAX_SELECT_COUNT
    assert (req.lat is None) == (req.lon is None)
    assert req.expires_at is None or req.expires_at.tzinfo is not None
    assert RelaySelectRequest.model_validate_json(req.model_dump_json()) == req


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_select_request_from_arbitrary_bytes(raw):
    try:
        req = RelaySelectRequest.model_validate_json(raw)
    except ValidationError:
        return
    assert 1 <= req.count <= MAX_SELECT_COUNT


_heartbeat_dicts = st.fixed_dictionaries(
    {},
    optional={
        "relay_id": st.one_of(st.text(max_size=12), _json_values),
        "public_ipv4": st.one_of(st.lists(st.ip_addresses().map(str), max_size=3), _json_values),
        "public_ipv6": st.one_of(st.lists(st.ip_addresses().map(str), max_size=3), _json_values),
        "port": st.one_of(st.integers(-2, 70000), _json_values),
        "realm": _json_values,
        "lat": _json_values,
        "lon": _json_values,
        "load": _json_values,
        "auth_secret": _json_values,
        "interval_s": _json_values,
        "sent_at": st.one_of(st.datetimes().map(str), _json_values),
    },
)


@settings(max_examples=300, deadline=None)
@given(_heartbeat_dicts)
def test_heartbeat_validates_or_refuses_never_crashes(data):
    try:
        h = RelayHeartbeat.model_validate_json(json.dumps(data))
    except ValidationError:
        return
    assert h.public_ipv4 or h.public_ipv6
    assert h.interval_s > 0
    assert RelayHeartbeat.model_validate_json(h.model_dump_json()) == h
