"""Sans-IO TURN server core (RFC 8656, UDP transport) with long-term credentials.

The asyncio shell (``services/relay``) feeds datagrams and the time in and
drains commands, datagrams and the next deadline out; see :class:`Server`.
"""

from zerogate.proto.turn.channeldata import (
    CHANNEL_NUMBER_MAX,
    CHANNEL_NUMBER_MIN,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
)
from zerogate.proto.turn.config import ServerConfig
from zerogate.proto.turn.credentials import (
    long_term_key,
    rest_api_credentials,
    rest_api_password,
)
from zerogate.proto.turn.errors import LocalProtocolError, RemoteProtocolError, TurnError
from zerogate.proto.turn.peers import PeerFilter, normalise_ip
from zerogate.proto.turn.server import (
    Addr,
    AllocationId,
    Command,
    RelayClosed,
    RelayOpened,
    Server,
    Stats,
    Transmit,
)

__all__ = [
    "CHANNEL_NUMBER_MAX",
    "CHANNEL_NUMBER_MIN",
    "Addr",
    "AllocationId",
    "Command",
    "LocalProtocolError",
    "PeerFilter",
    "RelayClosed",
    "RelayOpened",
    "RemoteProtocolError",
    "Server",
    "ServerConfig",
    "Stats",
    "Transmit",
    "TurnError",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
    "long_term_key",
    "normalise_ip",
    "rest_api_credentials",
    "rest_api_password",
]
