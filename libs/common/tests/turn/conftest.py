"""A scripted TURN client for the sans-IO server, driven on a virtual clock."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from zerogate.proto import stun
from zerogate.proto.stun import Attr, MessageClass, Method
from zerogate.proto.turn import (
    CloseRelaySocket,
    OpenRelaySocket,
    Server,
    ServerConfig,
    Transmit,
    long_term_key,
)

REALM = "zerogate.test"
T0 = 1_000.0  # the monotonic clock of the tests
UNIX_T0 = 1_700_000_000.0  # the unix time at T0
USERS = {"alice": "alice-password", "bob": "bob-password"}
AUTH_SECRET = b"rest-api-shared-secret"
RELAY_V4 = "198.51.100.10"
RELAY_V6 = "2001:db8:100::10"


def make_config(**overrides) -> ServerConfig:
    values = {
        "realm": REALM,
        "nonce_secret": b"n" * 32,
        "auth_secret": AUTH_SECRET,
        "static_users": dict(USERS),
        "relay_addresses_v4": [RELAY_V4],
        "relay_addresses_v6": [RELAY_V6],
        "own_addresses": ["198.51.100.1"],
        "relay_port_min": 50000,
        "relay_port_max": 50999,
    }
    values.update(overrides)
    return ServerConfig(**values)


@dataclass
class Harness:
    """The server plus everything it emitted, on a clock the test moves.

    It plays the shell: every :class:`OpenRelaySocket` is reported bound, unless
    its port is in :attr:`unbindable` (another local socket holds it).
    """

    server: Server
    now: float = T0
    sent: list[Transmit] = field(default_factory=list)
    commands: list[OpenRelaySocket | CloseRelaySocket] = field(default_factory=list)
    unbindable: set[int] = field(default_factory=set)
    bind_failures: list[OpenRelaySocket] = field(default_factory=list)

    def drain(self) -> None:
        while (command := self.server.poll_command()) is not None:
            if isinstance(command, OpenRelaySocket) and command.relay[1] in self.unbindable:
                self.bind_failures.append(command)
                self.server.handle_relay_bind_failed(command.relay, self.now)
                continue
            self.commands.append(command)
            if isinstance(command, OpenRelaySocket):
                self.server.handle_relay_bound(command.relay, self.now)
        while (transmit := self.server.poll_transmit()) is not None:
            self.sent.append(transmit)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way."""
        target = self.now + seconds
        while (deadline := self.server.poll_timeout()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            self.server.handle_timeout(self.now)
        self.now = target
        self.server.handle_timeout(self.now)
        self.drain()

    def client(self, address=("192.0.2.200", 40000), username="alice", password=None):
        if password is None:
            password = USERS.get(username, "")
        return Client(self, address, username, password)

    def peer_datagram(self, relay, data, peer):
        self.server.handle_peer_datagram(relay, data, peer, self.now)
        self.drain()
        return self.take()

    @staticmethod
    def code(response: stun.Message) -> int:
        return code_of(response)

    def take(self) -> list[Transmit]:
        sent, self.sent = self.sent, []
        return sent


class Client:
    """Builds requests with our codec and reads the answers (long-term credentials)."""

    def __init__(self, harness: Harness, address, username: str, password: str) -> None:
        self.h = harness
        self.address = address
        self.username = username
        self.password = password
        self.nonce: str | None = None
        self.realm: str | None = None
        self.key = long_term_key(username, REALM, password)
        self.sha256 = False

    def send_raw(self, data: bytes) -> list[Transmit]:
        self.h.server.handle_client_datagram(data, self.address, self.h.now)
        self.h.drain()
        return self.h.take()

    def request(
        self,
        method: int,
        attributes=None,
        *,
        repeated=(),
        sign: bool = True,
        tid: bytes | None = None,
        key: bytes | None = None,
    ) -> tuple[stun.Message, bytes]:
        tid = tid or os.urandom(12)
        message = stun.Message(method, MessageClass.REQUEST, tid, dict(attributes or {}))
        message.repeated.extend(repeated)
        if sign and self.nonce is not None:
            message.attributes[Attr.USERNAME] = self.username
            message.attributes[Attr.REALM] = self.realm or REALM
            message.attributes[Attr.NONCE] = self.nonce
            data = stun.encode(message, key=key or self.key, sha256=self.sha256, fingerprint=True)
        else:
            data = stun.encode(message, fingerprint=True)
        replies = self.send_raw(data)
        assert len(replies) == 1, replies
        assert replies[0].source is None
        assert replies[0].destination == self.address
        response = stun.decode(replies[0].data)
        assert response.transaction_id == tid
        assert response.method == method
        return response, replies[0].data

    def call(self, method: int, attributes=None, **kwargs) -> stun.Message:
        """Send a request, answering a 401/438 challenge once, like real clients."""
        if self.nonce is None:
            response, _ = self.request(method, attributes, sign=False, **kwargs)
            self._learn(response)
            if not _is_challenge(response):
                return response
        response, _ = self.request(method, attributes, **kwargs)
        if response.message_class == MessageClass.ERROR and _code(response) == 438:
            self._learn(response)
            response, _ = self.request(method, attributes, **kwargs)
        return response

    def _learn(self, response: stun.Message) -> None:
        if response.get_str(Attr.NONCE) is not None:
            self.nonce = response.get_str(Attr.NONCE)
            self.realm = response.get_str(Attr.REALM)

    def allocate(self, attributes=None, **kwargs) -> stun.Message:
        attrs = {Attr.REQUESTED_TRANSPORT: 17}
        attrs.update(attributes or {})
        return self.call(Method.ALLOCATE, attrs, **kwargs)

    def permit(self, *peers) -> stun.Message:
        first, *rest = peers
        return self.call(
            Method.CREATE_PERMISSION,
            {Attr.XOR_PEER_ADDRESS: first},
            repeated=[(Attr.XOR_PEER_ADDRESS, p) for p in rest],
        )

    def bind(self, channel: int, peer) -> stun.Message:
        return self.call(
            Method.CHANNEL_BIND, {Attr.CHANNEL_NUMBER: channel, Attr.XOR_PEER_ADDRESS: peer}
        )

    def refresh(self, lifetime: int | None = None, **attrs) -> stun.Message:
        attributes = dict(attrs)
        if lifetime is not None:
            attributes[Attr.LIFETIME] = lifetime
        return self.call(Method.REFRESH, attributes)

    def send_indication(self, peer, data: bytes) -> list[Transmit]:
        message = stun.Message(
            Method.SEND,
            MessageClass.INDICATION,
            os.urandom(12),
            {Attr.XOR_PEER_ADDRESS: peer, Attr.DATA: data},
        )
        return self.send_raw(stun.encode(message))

    def verify(self, response: stun.Message) -> bool:
        return stun.check_integrity(response, self.key)


def _code(response: stun.Message) -> int | None:
    error = response.error_code()
    return error.code if error else None


def _is_challenge(response: stun.Message) -> bool:
    return response.message_class == MessageClass.ERROR and _code(response) in (401, 438)


def code_of(response: stun.Message) -> int:
    """200 for a success response, else the ERROR-CODE."""
    if response.message_class == MessageClass.SUCCESS:
        return 200
    code = _code(response)
    assert code is not None
    return code


@pytest.fixture
def make_harness():
    def factory(**overrides) -> Harness:
        return Harness(Server(make_config(**overrides), now=T0, unix_now=UNIX_T0))

    return factory


@pytest.fixture
def harness(make_harness) -> Harness:
    return make_harness()
