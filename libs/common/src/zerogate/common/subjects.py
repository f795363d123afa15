"""Every NATS subject Zerogate uses, built here and nowhere else.

Subjects are versioned (``zg.v1``) so a later incompatible change can run
beside the old one during an upgrade.
"""

from __future__ import annotations

import re
from typing import Final, Literal

PREFIX: Final = "zg.v1"

TOKEN_VERIFY: Final = f"{PREFIX}.api.token.verify"
CLIENT_INIT: Final = f"{PREFIX}.api.client.init"
GATEWAY_INIT: Final = f"{PREFIX}.api.gateway.init"
FLOW_AUTHORIZE: Final = f"{PREFIX}.api.flow.authorize"
RELAY_HEARTBEAT: Final = f"{PREFIX}.relay.heartbeat"
RELAY_SELECT: Final = f"{PREFIX}.relay.select"

#: Subscribe to every event with this wildcard.
EVENTS_ALL: Final = f"{PREFIX}.events.>"

#: Queue group of the api service on its request subjects.
API_QUEUE: Final = "api"
#: Queue group of the relay registry on ``relay.select``.
REGISTRY_QUEUE: Final = "relay-registry"

AgentKind = Literal["client", "gateway"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _token(value: str, what: str) -> str:
    """A subject token must not contain dots, wildcards or spaces."""
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token")
    return value


def agent(kind: AgentKind, agent_id: str) -> str:
    """The subject a signaling instance holding that agent's WebSocket listens on."""
    if kind not in ("client", "gateway"):
        raise ValueError(f"unknown agent kind {kind!r}")
    return f"{PREFIX}.agent.{kind}.{_token(agent_id, 'agent id')}"


def events_of(entity: str) -> str:
    """Every action of one entity: ``zg.v1.events.<entity>.*``."""
    return f"{PREFIX}.events.{_token(entity, 'entity')}.*"


def event(entity: str, action: str) -> str:
    """``zg.v1.events.<entity>.<action>``, e.g. ``event("policy", "deleted")``."""
    return f"{PREFIX}.events.{_token(entity, 'entity')}.{_token(action, 'action')}"
