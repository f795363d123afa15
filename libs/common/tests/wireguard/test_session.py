"""A peer's Session on its own: its timer events, keypair rotation and sealing.

The constants are restated from the whitepaper (§6.1 and the sections named
beside each) so these tests check the specification, not the code's own
constants.
"""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zerogate.proto.wireguard import RemoteProtocolError
from zerogate.proto.wireguard.noise import SessionKeys
from zerogate.proto.wireguard.peer import (
    RECEIVED_CONFIRMS,
    RECEIVED_ROAMED,
    Keypair,
    Peer,
    Session,
    Timer,
    WakeUp,
)

REKEY_AFTER_MESSAGES = 2**60  # §6.1
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 10.0
NEW_HANDSHAKE_AFTER = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT  # §6.5: sent data, heard nothing
RECEIVE_REKEY_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT  # §6.2
ZERO_KEYS_AFTER = REJECT_AFTER_TIME * 3  # §6.3
MAX_STAGED = 128  # wireguard-go QueueStagedSize
TRANSPORT = 4  # §5.4.6 message type
ENDPOINT = ("192.0.2.7", 51820)
T0 = 1000.0


class Harness:
    """A session, the wake-up it shares, and the handshakes it asked for."""

    def __init__(self, *, endpoint: tuple[str, int] | None = ENDPOINT) -> None:
        self.wakeup = WakeUp()
        self.wanted: list[float] = []
        self.peer = Peer(os.urandom(32), want_handshake=self._want, wakeup=self.wakeup)
        self.session: Session = self.peer.session
        self.session.set_endpoint(endpoint)
        self._index = 100

    def _want(self, session: Session, now: float) -> None:
        assert session is self.session
        self.wanted.append(now)

    def keypair(self, *, initiator: bool, now: float = T0) -> Keypair:
        self._index += 1
        keys = SessionKeys(send=os.urandom(32), receive=os.urandom(32))
        return Keypair(
            self.session,
            keys,
            is_initiator=initiator,
            local_index=self._index,
            remote_index=self._index + 1000,
            now=now,
        )


@pytest.fixture
def h() -> Harness:
    return Harness()


# --- timers (whitepaper §6, wireguard-go timers.go) -------------------------------


def test_nothing_is_armed_at_first(h: Harness) -> None:
    assert [h.session.deadline(t) for t in Timer] == [None] * 5
    assert h.session.earliest_deadline() == float("inf")
    assert h.session.pop_due(T0 + 10_000) is None


def test_data_sent_arms_new_handshake_once_and_a_received_packet_disarms_it(h: Harness) -> None:
    h.session.data_sent(T0)
    assert h.session.deadline(Timer.NEW_HANDSHAKE) == T0 + NEW_HANDSHAKE_AFTER
    h.session.data_sent(T0 + 3)  # more data does not push the deadline
    assert h.session.deadline(Timer.NEW_HANDSHAKE) == T0 + NEW_HANDSHAKE_AFTER
    h.session.authenticated_received()
    assert h.session.deadline(Timer.NEW_HANDSHAKE) is None


def test_data_received_arms_one_keepalive_and_remembers_another(h: Harness) -> None:
    h.session.data_received(T0)
    assert h.session.deadline(Timer.SEND_KEEPALIVE) == T0 + KEEPALIVE_TIMEOUT
    h.session.data_received(T0 + 4)  # while armed: one more is due after it
    assert h.session.deadline(Timer.SEND_KEEPALIVE) == T0 + KEEPALIVE_TIMEOUT
    assert h.session.pop_due(T0 + KEEPALIVE_TIMEOUT - 0.001) is None
    assert h.session.pop_due(T0 + KEEPALIVE_TIMEOUT) is Timer.SEND_KEEPALIVE
    assert h.session.deadline(Timer.SEND_KEEPALIVE) is None
    h.session.keepalive_sent(T0 + KEEPALIVE_TIMEOUT)
    assert h.session.deadline(Timer.SEND_KEEPALIVE) == T0 + 2 * KEEPALIVE_TIMEOUT
    assert h.session.pop_due(T0 + 2 * KEEPALIVE_TIMEOUT) is Timer.SEND_KEEPALIVE
    h.session.keepalive_sent(T0 + 2 * KEEPALIVE_TIMEOUT)  # nothing arrived meanwhile
    assert h.session.deadline(Timer.SEND_KEEPALIVE) is None


def test_anything_sent_carries_the_keepalive(h: Harness) -> None:
    h.session.data_received(T0)
    h.session.authenticated_sent()
    assert h.session.deadline(Timer.SEND_KEEPALIVE) is None


def test_persistent_keepalive_follows_traversal_and_turns_off(h: Harness) -> None:
    h.session.authenticated_traversal(T0)
    assert h.session.deadline(Timer.PERSISTENT_KEEPALIVE) is None  # off
    assert h.session.set_keepalive_interval(25) is True  # just turned on
    assert h.session.set_keepalive_interval(30) is False  # was on already
    h.session.authenticated_traversal(T0)
    assert h.session.deadline(Timer.PERSISTENT_KEEPALIVE) == T0 + 30
    h.session.authenticated_traversal(T0 + 7)
    assert h.session.deadline(Timer.PERSISTENT_KEEPALIVE) == T0 + 37
    assert h.session.set_keepalive_interval(0) is False
    assert h.session.deadline(Timer.PERSISTENT_KEEPALIVE) is None


def test_retransmit_after_rekey_timeout_plus_jitter_until_complete(h: Harness) -> None:
    h.session.handshake_initiated(T0, 0.2)
    assert h.session.deadline(Timer.RETRANSMIT_HANDSHAKE) == pytest.approx(T0 + REKEY_TIMEOUT + 0.2)
    h.session.handshake_completed(1_700_000_000.0)
    assert h.session.deadline(Timer.RETRANSMIT_HANDSHAKE) is None
    assert h.session.last_handshake_unix == 1_700_000_000.0


def test_retries_stop_after_rekey_attempt_time(h: Harness) -> None:
    retries = 0
    while h.session.retry_handshake():
        retries += 1
        assert retries < 100
    assert retries == REKEY_ATTEMPT_TIME / REKEY_TIMEOUT  # 18
    h.session.handshake_completed(0.0)  # a completed handshake starts the count again
    assert h.session.retry_handshake()


def test_giving_up_drops_staged_packets_and_schedules_zeroing(h: Harness) -> None:
    assert h.session.seal(b"\x45" + bytes(19), T0, 0) is None  # no keypair: staged
    assert h.session.staged == 1
    h.session.data_received(T0)
    h.session.give_up_handshake(T0 + 90)
    assert h.session.staged == 0
    assert h.session.deadline(Timer.SEND_KEEPALIVE) is None
    assert h.session.deadline(Timer.ZERO_KEY_MATERIAL) == T0 + 90 + ZERO_KEYS_AFTER


def test_a_derived_session_zeroes_its_keys_after_three_reject_after_times(h: Harness) -> None:
    h.session.install(h.keypair(initiator=True), T0)
    assert h.session.deadline(Timer.ZERO_KEY_MATERIAL) == T0 + ZERO_KEYS_AFTER
    assert h.session.pop_due(T0 + ZERO_KEYS_AFTER) is Timer.ZERO_KEY_MATERIAL
    assert len(h.session.drop_keys()) == 1
    assert h.session.current is None


def test_due_timers_pop_in_order_and_the_wakeup_is_never_late(h: Harness) -> None:
    h.session.set_keepalive_interval(1)
    h.session.session_derived(T0)  # T0 + 540
    h.session.data_sent(T0)  # T0 + 15
    h.session.data_received(T0)  # T0 + 10
    h.session.handshake_initiated(T0, 0.0)  # T0 + 5
    h.session.authenticated_traversal(T0)  # T0 + 1
    assert h.wakeup.at == T0 + 1
    assert h.session.earliest_deadline() == T0 + 1
    late = T0 + 1000
    assert [h.session.pop_due(late) for _ in range(6)] == [*Timer, None]
    assert h.session.earliest_deadline() == float("inf")


# --- handshake bookkeeping -----------------------------------------------------------


def test_at_most_one_initiation_per_rekey_timeout(h: Harness) -> None:
    assert h.session.may_initiate(T0, retry=False, force=False)
    assert not h.session.may_initiate(T0 + REKEY_TIMEOUT - 0.01, retry=False, force=False)
    assert h.session.may_initiate(T0 + 1, retry=True, force=True)  # a cookie resend
    assert h.session.may_initiate(T0 + 1 + REKEY_TIMEOUT, retry=False, force=False)


def test_no_initiation_without_an_endpoint() -> None:
    h = Harness(endpoint=None)
    assert not h.session.may_initiate(T0, retry=False, force=False)


def test_replayed_or_too_frequent_initiations_are_refused(h: Harness) -> None:
    h.session.accept_initiation(b"\x01" * 12, T0)
    with pytest.raises(RemoteProtocolError):
        h.session.accept_initiation(b"\x01" * 12, T0 + 60)  # the same TAI64N
    with pytest.raises(RemoteProtocolError):
        h.session.accept_initiation(b"\x02" * 12, T0 + 0.01)  # over 50 per second
    h.session.accept_initiation(b"\x02" * 12, T0 + 0.03)
    assert h.session.greatest_timestamp == b"\x02" * 12


# --- keypairs ----------------------------------------------------------------------------


def test_keypair_deadlines() -> None:
    h = Harness()
    initiator, responder = h.keypair(initiator=True), h.keypair(initiator=False)
    assert initiator.reject_at == responder.reject_at == T0 + REJECT_AFTER_TIME
    assert initiator.rekey_at == T0 + REKEY_AFTER_TIME
    assert initiator.receive_rekey_at == T0 + RECEIVE_REKEY_AGE
    assert responder.rekey_at == responder.receive_rekey_at == float("inf")


def test_responder_keypair_waits_as_next_until_confirmed(h: Harness) -> None:
    old = h.keypair(initiator=True)
    assert h.session.install(old, T0) == []
    new = h.keypair(initiator=False)
    assert h.session.install(new, T0 + 1) == []
    assert (h.session.previous, h.session.current, h.session.next) == (None, old, new)
    flags = h.session.received(new, b"", 32, ENDPOINT, T0 + 2)
    assert flags == RECEIVED_CONFIRMS
    assert h.session.confirm_next() == []
    assert (h.session.previous, h.session.current, h.session.next) == (old, new, None)
    newer = h.keypair(initiator=True)
    assert h.session.install(newer, T0 + 3) == [old.local_index]
    assert (h.session.previous, h.session.current) == (new, newer)


def test_received_reports_roaming_and_books_bytes(h: Harness) -> None:
    kp = h.keypair(initiator=False)
    h.session.install(kp, T0)
    h.session.confirm_next()
    assert h.session.received(kp, b"x", 48, ENDPOINT, T0) == 0
    assert h.session.received(kp, b"x", 48, ("203.0.113.5", 4000), T0) == RECEIVED_ROAMED
    assert h.session.endpoint == ("203.0.113.5", 4000)
    assert h.session.rx_bytes == 96
    assert h.session.deadline(Timer.SEND_KEEPALIVE) == T0 + KEEPALIVE_TIMEOUT


def test_initiator_asks_for_a_handshake_when_receiving_on_an_old_key_once(h: Harness) -> None:
    kp = h.keypair(initiator=True)
    h.session.install(kp, T0)
    h.session.received(kp, b"x", 48, ENDPOINT, T0 + RECEIVE_REKEY_AGE - 0.01)
    assert h.wanted == []
    h.session.received(kp, b"x", 48, ENDPOINT, T0 + RECEIVE_REKEY_AGE)
    h.session.received(kp, b"x", 48, ENDPOINT, T0 + RECEIVE_REKEY_AGE + 1)
    assert h.wanted == [T0 + RECEIVE_REKEY_AGE]


# --- sealing (the one path every transport message takes, §5.4.6) -------------------------


def test_seal_builds_a_transport_message_the_peer_can_open(h: Harness) -> None:
    keys = SessionKeys(send=os.urandom(32), receive=os.urandom(32))
    kp = Keypair(h.session, keys, is_initiator=True, local_index=1, remote_index=0xABCD, now=T0)
    h.session.install(kp, T0)
    packet = b"\x45" + bytes(20)  # 21 bytes: padded to 32
    for counter in range(3):
        sealed = h.session.seal(packet, T0, 0)
        assert sealed is not None
        endpoint, data = sealed
        assert endpoint == ENDPOINT
        assert struct.unpack_from("<IIQ", data) == (TRANSPORT, 0xABCD, counter)
        nonce = bytes(4) + counter.to_bytes(8, "little")
        assert ChaCha20Poly1305(keys.send).decrypt(nonce, data[16:], None) == packet + bytes(11)
    assert h.session.tx_bytes == 3 * (16 + 32 + 16)
    assert h.session.deadline(Timer.NEW_HANDSHAKE) == T0 + NEW_HANDSHAKE_AFTER


def test_a_keepalive_is_not_data(h: Harness) -> None:
    h.session.install(h.keypair(initiator=True), T0)
    sealed = h.session.seal(b"", T0, 0)
    assert sealed is not None
    assert len(sealed[1]) == 32  # header and tag only
    assert h.session.deadline(Timer.NEW_HANDSHAKE) is None


def test_seal_without_a_usable_keypair_stages_and_asks_for_a_handshake(h: Harness) -> None:
    for i in range(MAX_STAGED + 3):
        assert h.session.seal(bytes([0x45, i]), T0, 0) is None
    assert h.session.staged == MAX_STAGED
    assert h.wanted == [T0] * (MAX_STAGED + 3)
    kp = h.keypair(initiator=True)
    h.session.install(kp, T0)
    flushed = h.session.flush_staged(T0, 0)
    assert len(flushed) == MAX_STAGED  # the newest ones, in order
    nonce = bytes(12)
    assert kp.send.decrypt(nonce, flushed[0][1][16:], None)[:2] == bytes([0x45, 3])
    # too old to send on: staged again, and a handshake asked for
    assert h.session.seal(b"\x45", T0 + REJECT_AFTER_TIME, 0) is None
    assert h.session.staged == 1


def test_seal_asks_for_a_rekey_when_the_keypair_is_due(h: Harness) -> None:
    initiator = h.keypair(initiator=True)
    h.session.install(initiator, T0)
    assert h.session.seal(b"\x45", T0 + REKEY_AFTER_TIME - 0.01, 0) is not None
    assert h.wanted == []
    assert h.session.seal(b"\x45", T0 + REKEY_AFTER_TIME, 0) is not None
    assert h.wanted == [T0 + REKEY_AFTER_TIME]
    initiator.send_counter = REKEY_AFTER_MESSAGES
    assert h.session.seal(b"\x45", T0, 0) is not None
    assert h.wanted[-1] == T0
    initiator.send_counter = REJECT_AFTER_MESSAGES
    assert h.session.seal(b"\x45", T0, 0) is None


def test_without_an_endpoint_seal_drops(h: Harness) -> None:
    h.session.install(h.keypair(initiator=True), T0)
    h.session.set_endpoint(None)
    assert h.session.seal(b"\x45", T0, 0) is None
    assert h.session.staged == 0
    assert h.wanted == []
