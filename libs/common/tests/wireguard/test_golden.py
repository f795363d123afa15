"""Golden bytes captured from wireguard-go (Debian package, 2026-11) with
throwaway keys: an initiation it sent us (our responder must accept it as
written), and a whole exchange where we initiated (replayed bit for bit)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from zerogate.proto.wireguard import Device, HandshakeCompleted, PeerEndpointChanged, noise
from zerogate.proto.wireguard.crypto import public_key
from zerogate.proto.wireguard.messages import Initiation

# keys generated for the capture only
OUR_PRIVATE = bytes.fromhex("c85bcc749184961d4ff474e7dda815f14f726bedc9ef9e468829ab278f92c07f")
GO_PRIVATE = bytes.fromhex("904ca9108e389b1d4cb690f4d3b80b66c0944ce7b6b3c68f280553216b661d63")
PSK = bytes.fromhex("b96ee1a1b86fb7d978c32a6b25ba5e40f286513fc08c9089ce8008728c821004")
GO_INITIATION = bytes.fromhex(
    "01000000fc904cdb5d9ad526f4e8de0c7acc6bd9f55e51d616cf54ca3b5c27872dc0249f"
    "8961f90f38a2bd0df4dbdf04dfdc6a69e66f080d1d84d1e7a530a432f61ce038a6b82f02"
    "0df6a8b00940870e09d8152a8ff2e2273af9f3185373cf1db0e63556ccf4aac589c62abd"
    "07e750240490bbdeed7cfddcdaf432e6dfad1437a273422e000000000000000000000000"
    "00000000"
)
GO_ENDPOINT = ("198.18.7.2", 51820)
CAPTURED_AROUND = 1_795_610_000  # unix seconds, within an hour of the capture
TAI64_LABEL = 2**62 + 10


def _device() -> Device:
    dev = Device(OUR_PRIVATE, now=0.0, unix_time=CAPTURED_AROUND)
    dev.add_peer(public_key(GO_PRIVATE), preshared_key=PSK, now=0.0)
    return dev


def test_captured_initiation_is_accepted_and_answered() -> None:
    assert len(GO_INITIATION) == 148
    msg = Initiation.decode(GO_INITIATION)
    assert msg.mac2 == bytes(16)  # wireguard-go held no cookie
    dev = _device()
    assert dev.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0) is None
    tx = dev.poll_transmit()
    assert tx is not None
    assert tx.destination == GO_ENDPOINT
    assert tx.peer == public_key(GO_PRIVATE)
    assert len(tx.data) == 92
    assert tx.data[0] == 2
    # the response is addressed to wireguard-go's sender index
    assert struct.unpack_from("<I", tx.data, 8)[0] == msg.sender
    assert dev.poll_event() == PeerEndpointChanged(public_key(GO_PRIVATE), GO_ENDPOINT)
    assert dev.poll_event() is None  # completed only when wireguard-go confirms


def test_captured_timestamp_is_a_whitened_tai64n() -> None:
    dev = _device()
    dev.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0)
    stamp = dev.peers[public_key(GO_PRIVATE)]._greatest_timestamp
    secs, nanos = struct.unpack(">QI", stamp)
    assert abs(secs - TAI64_LABEL - CAPTURED_AROUND) < 86400
    assert nanos % 2**24 == 0  # wireguard-go whitens the low 24 bits
    # replaying the capture is refused
    dev.poll_transmit()
    assert dev.decrypt(GO_INITIATION, GO_ENDPOINT, 5.0) is None
    assert dev.poll_transmit() is None


def test_captured_initiation_for_someone_else_is_ignored() -> None:
    other = Device(GO_PRIVATE, now=0.0, unix_time=CAPTURED_AROUND)  # wrong responder key
    other.add_peer(public_key(OUR_PRIVATE), preshared_key=PSK, now=0.0)
    assert other.decrypt(GO_INITIATION, GO_ENDPOINT, 1.0) is None
    assert other.poll_transmit() is None  # mac1 is keyed to our public key


# --- our initiator against wireguard-go ----------------------------------------
# A second capture: we initiated (with the ephemeral key below) and sent one
# IPv4/UDP packet; wireguard-go answered and sent back an ICMP port-unreachable.
I_OUR_PRIVATE = bytes.fromhex("90c108208321566f6e9fa8449ac724881175c00f3664cd1d615888c54437497e")
I_GO_PRIVATE = bytes.fromhex("880ec54f1dd345a6259721de63c5f5cde2f28c627129d769f35ad54adf98336d")
I_EPHEMERAL = bytes.fromhex("784d21029d26e37391e8d2ddb9cb6df783bb14ff81f4f1de1a2009065d5d4f46")
I_PSK = bytes.fromhex("bf9db980fe1102be135797308d9e625bffe96fd740bfffe4a6cbfbd67928b15a")
I_UNIX_TIME = 1795613756.31  # TAI64N 400000006b06e446 12000000 once whitened
I_LOCAL_INDEX = 0x11223344
I_INITIATION = bytes.fromhex(
    "01000000443322110e6ff8a0bd93a79635fc3d21ec047352aac7d3084cc3e29fdf1f50c6"
    "9d38bb576371b06479afbdb1e7386acce6b9b54985989f2ec85899c8918d3bef08404071"
    "aa344a23774b085f1d8cec13a3e0cf67745a73a9891fa76fa607df71f17c6ee1e525d08b"
    "b94cc887c64573eaa8b39ee1e6af70b77ebc118b4bdaaeb4000000000000000000000000"
    "00000000"
)
I_RESPONSE = bytes.fromhex(
    "02000000526ab07a443322111d62b1a39852acc6f25b8012b8228c9d2eb18f4e3921fb47"
    "157c37e54be3f14d43a54bbc48403c8a0a53bbcd4bbb8aadf35ee430f5b7837d056d2519"
    "11fb344400000000000000000000000000000000"
)
I_PACKET = bytes.fromhex("4500002400010000401166b40a0900010a090002270f1e610010000068656c6c6f2d676f")
I_SENT = bytes.fromhex(
    "04000000526ab07a0000000000000000243deefc1815694e748cd053d5c53515845b65ab"
    "6707d70f2d5144fa9d1b4e868ca797b702afd4eddb0256591447ab8f122e11a88946bcac"
    "7602ec24c9658538"
)
I_BACK = bytes.fromhex(
    "040000004433221100000000000000005c600f714803813be2d2573e9b464ce03cf76aca"
    "ea747a0d137081382b8c222a7d0e721f0de3b7126b24e9827c40ae077105cc7e8ce27e57"
    "3e37e3d9847bd10088fd42e85255531e5cb2ccc250366bea"
)
I_GO_ENDPOINT = ("198.18.7.2", 51820)


class _FixedEphemeral:
    """Stands in for X25519PrivateKey.generate so the capture can be replayed."""

    @staticmethod
    def generate() -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(I_EPHEMERAL)


def test_our_initiator_reproduces_the_capture_and_reads_wireguard_gos_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(noise, "X25519PrivateKey", _FixedEphemeral)
    monkeypatch.setattr(Device, "_new_index", lambda self: I_LOCAL_INDEX)
    dev = Device(I_OUR_PRIVATE, now=0.0, unix_time=I_UNIX_TIME)
    go = public_key(I_GO_PRIVATE)
    dev.add_peer(
        go,
        preshared_key=I_PSK,
        allowed_ips=[ipaddress.ip_network("10.9.0.0/24")],
        endpoint=I_GO_ENDPOINT,
        now=0.0,
    )
    assert dev.encrypt(I_PACKET, 0.0) is None  # queued behind the handshake
    init = dev.poll_transmit()
    assert init is not None
    assert init.data == I_INITIATION  # bit-exact, MACs included
    assert dev.decrypt(I_RESPONSE, I_GO_ENDPOINT, 0.01) is None
    assert dev.poll_event() == HandshakeCompleted(go)
    sealed = dev.poll_transmit()
    assert sealed is not None
    assert sealed.data == I_SENT  # what wireguard-go accepted and answered
    reply = dev.decrypt(I_BACK, I_GO_ENDPOINT, 0.02)
    assert reply is not None
    assert reply[0] >> 4 == 4
    assert reply[9] == 1  # ICMP
    assert reply[12:16] == ipaddress.IPv4Address("10.9.0.2").packed
    assert reply[20:22] == b"\x03\x03"  # port unreachable
    assert reply.endswith(b"hello-go")  # it quotes our packet
