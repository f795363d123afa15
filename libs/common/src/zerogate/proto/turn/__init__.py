"""Sans-IO TURN cores (RFC 8656 over UDP, RFC 8489 long-term credentials).

* :class:`Server`: the relay's server core; the asyncio shell
  (``services/relay``) feeds datagrams and the time in and drains commands,
  datagrams and the next deadline out.
* :class:`Allocation`: the agents' client core, one allocation on one TURN
  server, sharing the agent's one UDP socket with ICE and WireGuard.
"""

from zerogate.proto.net import normalise_ip
from zerogate.proto.turn.auth import Authenticated, Authenticator, Nonces, Refused
from zerogate.proto.turn.channeldata import (
    CHANNEL_NUMBER_MAX,
    CHANNEL_NUMBER_MIN,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
)
from zerogate.proto.turn.client import (
    Allocated,
    Allocation,
    AllocationClosed,
    AllocationEvent,
    AllocationFailed,
    AllocationLost,
    AllocationState,
    ChannelBound,
    PeerRefused,
    ServerReflexive,
)
from zerogate.proto.turn.config import ServerConfig
from zerogate.proto.turn.credentials import (
    MAX_CREDENTIAL_LIFETIME,
    long_term_key,
    rest_api_check,
    rest_api_credentials,
    rest_api_expiry,
    rest_api_password,
    rest_api_password_for,
    rest_api_username,
)
from zerogate.proto.turn.errors import LocalProtocolError, RemoteProtocolError, TurnError
from zerogate.proto.turn.outputs import (
    AllocationId,
    CloseRelaySocket,
    Command,
    OpenRelaySocket,
    Transmit,
)
from zerogate.proto.turn.peers import PeerFilter
from zerogate.proto.turn.server import Server, Stats

__all__ = [
    "CHANNEL_NUMBER_MAX",
    "CHANNEL_NUMBER_MIN",
    "MAX_CREDENTIAL_LIFETIME",
    "Allocated",
    "Allocation",
    "AllocationClosed",
    "AllocationEvent",
    "AllocationFailed",
    "AllocationId",
    "AllocationLost",
    "AllocationState",
    "Authenticated",
    "Authenticator",
    "ChannelBound",
    "CloseRelaySocket",
    "Command",
    "LocalProtocolError",
    "Nonces",
    "OpenRelaySocket",
    "PeerFilter",
    "PeerRefused",
    "Refused",
    "RemoteProtocolError",
    "Server",
    "ServerConfig",
    "ServerReflexive",
    "Stats",
    "Transmit",
    "TurnError",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
    "long_term_key",
    "normalise_ip",
    "rest_api_check",
    "rest_api_credentials",
    "rest_api_expiry",
    "rest_api_password",
    "rest_api_password_for",
    "rest_api_username",
]
