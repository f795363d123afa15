"""TURN REST credentials: the coturn ``use-auth-secret`` scheme, restated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogate.proto.turn import rest_api_check
from zerogate.relay.credentials import (
    DEFAULT_TTL,
    MAX_TTL,
    CredentialsError,
    mint,
    turn_password,
    turn_username,
)

NOW = datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=UTC)
SECRET = "north-pole-shared-secret"
#: The relay's default --max-credential-lifetime: usernames expiring further ahead get 401.
RELAY_MAX_CREDENTIAL_LIFETIME = 24 * 3600
#: The registry leaves this much room for a relay whose clock runs behind.
CLOCK_SKEW = timedelta(minutes=5)


def check(secret: str | bytes, username: str, password: str, *, now: datetime) -> bool:
    """What a relay does with a username it receives: the one REST rule of the core."""
    key = secret.encode() if isinstance(secret, str) else secret
    return rest_api_check(key, username, password, unix_now=now.timestamp())


def reference_password(secret: str, username: str) -> str:
    """draft-uberti-behave-turn-rest-00 §2.2: base64(HMAC-SHA1(secret, username))."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def test_known_vector():
    # Computed independently with openssl:
    #   printf '1764072000:client-1' | openssl dgst -sha1 -hmac secret -binary | base64
    expected = "o0UDZmPGAfpueQ+Ws+086XKN4UU="
    assert turn_password("secret", "1764072000:client-1") == expected
    assert reference_password("secret", "1764072000:client-1") == expected
    # HMAC-SHA1 is 20 bytes, so the standard base64 form is 28 chars ending in one '='.
    pw = turn_password("secret", "1764072000:client-1")
    assert len(pw) == 28
    assert pw.endswith("=")
    assert len(base64.b64decode(pw)) == 20


def test_mint_default_ttl_is_24h_less_skew_and_username_is_expiry_colon_id():
    creds = mint(SECRET, "client-1", now=NOW)
    ttl = timedelta(hours=24) - CLOCK_SKEW
    expiry = int((NOW + ttl).timestamp())  # floored to whole seconds
    assert ttl == DEFAULT_TTL == MAX_TTL
    assert creds.username == f"{expiry}:client-1"
    assert creds.password == reference_password(SECRET, creds.username)
    assert creds.expires_at == datetime.fromtimestamp(expiry, UTC)
    assert creds.expires_at <= NOW + ttl


@pytest.mark.parametrize("ttl", [MAX_TTL + timedelta(seconds=1), timedelta(days=30)])
def test_registry_never_mints_what_a_relay_refuses(ttl):
    """Issue 8 item 9: nothing longer-lived than the relays accept (24 h) can be minted."""
    with pytest.raises(CredentialsError):
        mint(SECRET, "client-1", now=NOW, ttl=ttl)


@pytest.mark.parametrize("relay_clock_behind", [timedelta(0), CLOCK_SKEW])
def test_longest_minted_credentials_pass_a_relay_with_a_slow_clock(relay_clock_behind):
    creds = mint(SECRET, "client-1", now=NOW, ttl=MAX_TTL)
    relay_now = NOW - relay_clock_behind
    assert creds.expires_at - relay_now <= timedelta(seconds=RELAY_MAX_CREDENTIAL_LIFETIME)
    assert check(SECRET, creds.username, creds.password, now=relay_now)


def test_earlier_requested_expiry_wins():
    wanted = NOW + timedelta(minutes=30, seconds=0.9)
    creds = mint(SECRET, "gw-7", now=NOW, expires_at=wanted)
    assert creds.username.split(":")[0] == str(int(wanted.timestamp()))
    assert creds.expires_at <= wanted


def test_later_requested_expiry_is_capped_by_ttl():
    creds = mint(
        SECRET, "gw-7", now=NOW, expires_at=NOW + timedelta(days=7), ttl=timedelta(hours=2)
    )
    assert creds.expires_at == datetime.fromtimestamp(
        int((NOW + timedelta(hours=2)).timestamp()), UTC
    )


@pytest.mark.parametrize(
    "expires_at", [NOW, NOW - timedelta(seconds=1), NOW + timedelta(seconds=0.5)]
)
def test_expiry_not_in_future_is_refused(expires_at):
    with pytest.raises(CredentialsError) as err:
        mint(SECRET, "client-1", now=NOW, expires_at=expires_at)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("bad", ["", "a:b"])
def test_id_that_breaks_username_is_refused(bad):
    with pytest.raises(CredentialsError):
        mint(SECRET, bad, now=NOW)


def test_naive_times_and_bad_ttl_are_refused():
    with pytest.raises(CredentialsError):
        mint(SECRET, "c", now=NOW.replace(tzinfo=None))
    with pytest.raises(CredentialsError):
        mint(SECRET, "c", now=NOW, ttl=timedelta(0))
    with pytest.raises(CredentialsError):
        mint("", "c", now=NOW)


def test_password_hidden_from_repr():
    creds = mint(SECRET, "client-1", now=NOW)
    assert creds.password not in repr(creds)


def test_check_accepts_fresh_and_refuses_expired_or_wrong():
    creds = mint(SECRET, "client-1", now=NOW, ttl=timedelta(minutes=10))
    assert check(SECRET, creds.username, creds.password, now=NOW)
    assert check(SECRET.encode(), creds.username, creds.password, now=NOW)
    assert not check("other-secret", creds.username, creds.password, now=NOW)
    assert not check(SECRET, creds.username, creds.password, now=NOW + timedelta(minutes=11))
    tampered = creds.username.replace("client-1", "client-2")
    assert not check(SECRET, tampered, creds.password, now=NOW)


@pytest.mark.parametrize(
    "username", ["", "client", ":client", "abc:client", "12:", "-5:x", "1" * 40 + ":x"]
)
def test_check_refuses_malformed_usernames(username):
    assert not check(SECRET, username, "whatever", now=NOW)


def test_username_shape():
    assert turn_username(1700000000, "x") == "1700000000:x"
    with pytest.raises(CredentialsError):
        turn_username(-1, "x")


@settings(max_examples=300, deadline=None)
@given(username=st.text(max_size=80), password=st.text(max_size=40))
def test_check_never_crashes(username, password):
    assert check(SECRET, username, password, now=NOW) in (True, False)


@settings(max_examples=200, deadline=None)
@given(
    for_id=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    secret=st.binary(min_size=1, max_size=64),
    ttl_s=st.integers(min_value=1, max_value=int(MAX_TTL.total_seconds())),
)
def test_minted_credentials_verify(for_id, secret, ttl_s):
    creds = mint(secret, for_id, now=NOW, ttl=timedelta(seconds=ttl_s))
    mac = hmac.new(secret, creds.username.encode(), hashlib.sha1).digest()
    assert creds.password == base64.b64encode(mac).decode()
    assert check(secret, creds.username, creds.password, now=NOW)


def test_relay_side_check_agrees():
    """What the registry mints, the TURN server's own REST helper accepts."""
    from zerogate.proto.turn.credentials import rest_api_expiry, rest_api_password

    creds = mint(SECRET, "client-1", now=NOW, ttl=timedelta(minutes=10))
    assert rest_api_password(SECRET.encode(), creds.username) == creds.password
    assert rest_api_expiry(creds.username) == int(creds.expires_at.timestamp())
