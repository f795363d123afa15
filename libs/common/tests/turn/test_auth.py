"""Long-term credentials, nonces and the TURN REST API scheme (RFC 8489 §9.2)."""

import base64
import hashlib
import hmac

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import long_term_key, rest_api_credentials

REALM = "zerogate.test"
UNIX_T0 = 1_700_000_000  # the unix time at the start of every test (see conftest)
AUTH_SECRET = b"rest-api-shared-secret"


def test_binding_needs_no_credentials_and_returns_xor_mapped_address(harness):
    client = harness.client(address=("203.0.113.5", 12345))
    response, _ = client.request(Method.BINDING, sign=False)
    assert response.message_class == MessageClass.SUCCESS
    assert response.get_address(Attr.XOR_MAPPED_ADDRESS) == ("203.0.113.5", 12345)
    assert response.fingerprint_at is not None
    assert harness.server.state_size() == 0


def test_binding_over_ipv6(harness):
    client = harness.client(address=("2001:db8::77", 5000))
    response, _ = client.request(Method.BINDING, sign=False)
    assert response.get_address(Attr.XOR_MAPPED_ADDRESS) == ("2001:db8::77", 5000)


def test_unauthenticated_allocate_gets_401_with_realm_and_nonce(harness):
    client = harness.client()
    response, _ = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: 17}, sign=False)
    assert harness.code(response) == 401
    assert response.get_str(Attr.REALM) == REALM
    assert response.get_str(Attr.NONCE)
    assert response.integrity_at is None  # nothing to sign with yet
    assert harness.server.state_size() == 0


def test_authenticated_allocate_response_is_signed_with_the_client_key(harness):
    client = harness.client()
    response = client.allocate()
    assert harness.code(response) == 200
    expected_key = hashlib.md5(f"alice:{REALM}:alice-password".encode()).digest()
    assert client.key == expected_key
    assert stun.check_integrity(response, expected_key)
    assert response.fingerprint_at is not None


def test_sha256_integrity_is_answered_in_kind(harness):
    client = harness.client()
    client.sha256 = True
    response = client.allocate()
    assert harness.code(response) == 200
    assert response.integrity_sha256_at is not None
    assert stun.check_integrity(response, client.key)


def test_wrong_password_gets_401_and_changes_nothing(harness):
    good = harness.client(address=("192.0.2.200", 1))
    assert harness.code(good.allocate()) == 200
    before = harness.server.state_size()
    stats_before = harness.server.stats()
    bad = harness.client(address=("192.0.2.201", 2), username="alice", password="wrong")
    response = bad.allocate()
    assert harness.code(response) == 401
    assert response.integrity_at is None
    assert harness.server.state_size() == before
    assert harness.server.stats().allocations == stats_before.allocations
    assert harness.commands == [c for c in harness.commands if c.allocation == 1]


def test_tampered_message_integrity_gets_401(harness):
    client = harness.client()
    client.allocate()  # learn the nonce
    message = stun.Message(
        Method.REFRESH,
        MessageClass.REQUEST,
        b"x" * 12,
        {Attr.USERNAME: "alice", Attr.REALM: REALM, Attr.NONCE: client.nonce, Attr.LIFETIME: 0},
    )
    data = bytearray(stun.encode(message, key=client.key))
    data[-1] ^= 0x01  # flip one bit of the HMAC
    replies = client.send_raw(bytes(data))
    response = stun.decode(replies[0].data)
    assert harness.code(response) == 401
    assert harness.server.stats().allocations == 1  # the Refresh(0) did not delete


def test_unknown_user_gets_401(harness):
    client = harness.client(username="mallory", password="x")
    assert harness.code(client.allocate()) == 401


def test_missing_username_with_integrity_gets_400(harness):
    client = harness.client()
    client.allocate()
    message = stun.Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        b"y" * 12,
        {Attr.REQUESTED_TRANSPORT: 17, Attr.REALM: REALM, Attr.NONCE: client.nonce},
    )
    replies = client.send_raw(stun.encode(message, key=client.key))
    assert harness.code(stun.decode(replies[0].data)) == 400


def test_replay_after_nonce_expiry_gets_438_with_a_fresh_nonce(harness):
    client = harness.client()
    assert harness.code(client.allocate()) == 200
    harness.advance(599)  # still inside the 600 s nonce lifetime
    assert harness.code(client.refresh()) == 200
    harness.advance(2)
    response, _ = client.request(Method.REFRESH, {})
    assert harness.code(response) == 438
    assert response.get_str(Attr.REALM) == REALM
    fresh = response.get_str(Attr.NONCE)
    assert fresh
    assert fresh != client.nonce
    client.nonce = fresh
    response, _ = client.request(Method.REFRESH, {})
    assert harness.code(response) == 200


def test_nonce_is_bound_to_the_client_address(harness):
    first = harness.client(address=("192.0.2.200", 1))
    first.allocate()
    second = harness.client(address=("192.0.2.200", 2))
    second.nonce, second.realm = first.nonce, first.realm
    response, _ = second.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: 17})
    assert harness.code(response) == 438


def test_forged_nonce_gets_438(harness):
    client = harness.client()
    client.nonce, client.realm = "6553f100-000000000000000000000000", REALM
    response, _ = client.request(Method.ALLOCATE, {Attr.REQUESTED_TRANSPORT: 17})
    assert harness.code(response) == 438


def test_rest_api_credentials_follow_coturn_use_auth_secret(harness):
    username, password = rest_api_credentials(AUTH_SECRET, "device-1", UNIX_T0 + 3600)
    assert username == f"{UNIX_T0 + 3600}:device-1"
    # password = base64(HMAC-SHA1(secret, username))
    expected = base64.b64encode(hmac.new(AUTH_SECRET, username.encode(), hashlib.sha1).digest())
    assert password == expected.decode()
    client = harness.client(username=username, password=password)
    response = client.allocate()
    assert harness.code(response) == 200
    assert stun.check_integrity(response, long_term_key(username, REALM, password))


def test_expired_rest_username_gets_401(harness):
    username, password = rest_api_credentials(AUTH_SECRET, "device-1", UNIX_T0 - 1)
    client = harness.client(username=username, password=password)
    assert harness.code(client.allocate()) == 401


def test_rest_username_expires_while_in_use(harness):
    username, password = rest_api_credentials(AUTH_SECRET, "device-1", UNIX_T0 + 100)
    client = harness.client(username=username, password=password)
    assert harness.code(client.allocate()) == 200
    harness.advance(101)
    assert harness.code(client.refresh()) == 401


def test_rest_password_from_another_secret_gets_401(harness):
    username, password = rest_api_credentials(b"other secret", "device-1", UNIX_T0 + 3600)
    client = harness.client(username=username, password=password)
    assert harness.code(client.allocate()) == 401


def test_without_auth_secret_only_static_users_exist(make_harness):
    harness = make_harness(auth_secret=None)
    username, password = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 3600)
    assert harness.code(harness.client(username=username, password=password).allocate()) == 401
    assert harness.code(harness.client(address=("192.0.2.9", 9), username="bob").allocate()) == 200


def test_wrong_credentials_on_an_existing_allocation_get_441(harness):
    client = harness.client()
    assert harness.code(client.allocate()) == 200
    intruder = harness.client(username="bob")  # same 5-tuple, other valid user
    intruder.nonce, intruder.realm = client.nonce, client.realm
    response, _ = intruder.request(Method.REFRESH, {Attr.LIFETIME: 0})
    assert harness.code(response) == 441
    assert harness.server.stats().allocations == 1


def _rest_allocate(server, username, password, now):
    """Challenge, then a signed Allocate; returns the final error code or 200."""
    source = ("192.0.2.50", 5000)
    probe = stun.Message(Method.ALLOCATE, MessageClass.REQUEST, b"p" * 12, {})
    server.handle_client_datagram(stun.encode(probe), source, now)
    nonce = stun.decode(server.poll_transmit().data).get_str(Attr.NONCE)
    request = stun.Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        b"q" * 12,
        {
            Attr.REQUESTED_TRANSPORT: 17,
            Attr.USERNAME: username,
            Attr.REALM: REALM,
            Attr.NONCE: nonce,
        },
    )
    key = long_term_key(username, REALM, password)
    server.handle_client_datagram(stun.encode(request, key=key), source, now)
    while (command := server.poll_command()) is not None:
        server.handle_relay_bound(command.relay, now)  # the shell bound it
    response = stun.decode(server.poll_transmit().data)
    error = response.error_code()
    return 200 if error is None else error.code


def _rest_server(now, **kwargs):
    from zerogate.proto.turn import Server, ServerConfig

    config = ServerConfig(
        realm=REALM,
        nonce_secret=b"n" * 32,
        auth_secret=AUTH_SECRET,
        relay_addresses_v4=["198.51.100.10"],
    )
    return Server(config, now=now, **kwargs)


def test_without_unix_now_a_monotonic_clock_refuses_rest_usernames(caplog):
    username, password = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 3600)
    expired = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 - 3600)
    server = _rest_server(50.0)  # a monotonic clock, no unix_now
    assert "unix_now" in caplog.text
    assert _rest_allocate(server, *expired, 50.0) == 401
    assert _rest_allocate(server, username, password, 50.0) == 401


def test_unix_clock_as_now_checks_rest_expiry():
    username, password = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 3600)
    expired = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 - 3600)
    server = _rest_server(float(UNIX_T0))
    assert _rest_allocate(server, *expired, float(UNIX_T0)) == 401
    assert _rest_allocate(server, username, password, float(UNIX_T0)) == 200


def test_unix_now_maps_a_monotonic_clock_to_wall_time():
    username, password = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 10)
    server = _rest_server(50.0, unix_now=float(UNIX_T0))
    assert server.unix_time(60.0) == UNIX_T0 + 10
    assert _rest_allocate(server, username, password, 59.0) == 200
    late = _rest_server(50.0, unix_now=float(UNIX_T0))
    assert _rest_allocate(late, username, password, 61.0) == 401


def test_unauthenticated_answers_stay_small(harness):
    client = harness.client()
    request = stun.Message(Method.ALLOCATE, MessageClass.REQUEST, b"a" * 12, {})
    (reply,) = client.send_raw(stun.encode(request))
    assert Attr.SOFTWARE not in stun.decode(reply.data).attributes
    assert len(reply.data) <= 20 + 120  # header + ERROR-CODE, REALM, NONCE, FINGERPRINT
    binding = stun.Message(Method.BINDING, MessageClass.REQUEST, b"b" * 12, {})
    (reply,) = client.send_raw(stun.encode(binding))
    assert len(reply.data) <= 20 + 12 + 8  # XOR-MAPPED-ADDRESS + FINGERPRINT
    signed = client.allocate()
    assert signed.get_str(Attr.SOFTWARE) == "zerogate-relay"


# -- how long a TURN REST username may live (issue 8 item 9) ------------------------
DAY = 24 * 3600  # the relay's default --max-credential-lifetime


def test_rest_username_living_longer_than_the_maximum_gets_401(harness):
    """A username minted far into the future (a leaked secret, a misconfigured minter)
    is refused, though its password is right."""
    username, password = rest_api_credentials(AUTH_SECRET, "device-1", UNIX_T0 + DAY + 1)
    client = harness.client(username=username, password=password)
    assert harness.code(client.allocate()) == 401
    assert harness.server.stats().allocations == 0


def test_rest_username_living_exactly_the_maximum_is_accepted(harness):
    username, password = rest_api_credentials(AUTH_SECRET, "device-1", UNIX_T0 + DAY)
    client = harness.client(username=username, password=password)
    assert harness.code(client.allocate()) == 200


def test_max_credential_lifetime_is_configurable(make_harness):
    harness = make_harness(max_credential_lifetime=3600)
    late = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 3601)
    assert harness.code(harness.client(username=late[0], password=late[1]).allocate()) == 401
    good = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 3600)
    client = harness.client(address=("192.0.2.9", 9), username=good[0], password=good[1])
    assert harness.code(client.allocate()) == 200


def test_one_rest_rule_for_core_and_services():
    """The checker the relay service and the registry use is the core's rule:
    valid while unix_now < expiry <= unix_now + max_lifetime."""
    from zerogate.proto.turn import rest_api_check, rest_api_password_for

    username, password = rest_api_credentials(AUTH_SECRET, "d", UNIX_T0 + 100)
    assert rest_api_check(AUTH_SECRET, username, password, unix_now=UNIX_T0)
    assert not rest_api_check(AUTH_SECRET, username, password, unix_now=UNIX_T0 + 100)
    assert not rest_api_check(AUTH_SECRET, username, "wrong", unix_now=UNIX_T0)
    assert not rest_api_check(AUTH_SECRET, username, password, unix_now=UNIX_T0, max_lifetime=99)
    assert rest_api_password_for(AUTH_SECRET, "12:", unix_now=0, max_lifetime=DAY) is None
    bare = str(UNIX_T0 + 10)  # coturn accepts a bare expiry as the username
    assert rest_api_password_for(AUTH_SECRET, bare, unix_now=UNIX_T0, max_lifetime=DAY)
