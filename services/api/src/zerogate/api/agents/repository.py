"""SQL behind the agents' connect-time requests (``client.init``, ``gateway.init``).

The flow decision loads its inputs through the one decision loader,
:func:`zerogate.api.policies.repository.load_decision_inputs`; the resources a
client is told about come from
:func:`zerogate.api.resources.repository.visible_resources`.
"""

from __future__ import annotations

import uuid
from typing import Literal

from zerogate.api.db import Connection

AgentKind = Literal["client", "gateway"]


async def token_is_live(
    conn: Connection,
    token_id: uuid.UUID,
    account_id: uuid.UUID,
    kind: AgentKind,
    owner_id: uuid.UUID,
) -> bool:
    """The token exists in the account, is a ``kind`` token of ``owner_id`` (the
    actor of a client token, the site of a gateway token), is neither revoked nor
    expired (only a gateway token may lack an expiry), and a client token's actor
    exists and is enabled. Anything not found answers False."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (
                 SELECT 1 FROM tokens t
                   LEFT JOIN actors a ON a.account_id = t.account_id AND a.id = t.actor_id
                  WHERE t.id = $1 AND t.account_id = $2 AND t.type = $3
                    AND t.revoked_at IS NULL
                    AND (t.expires_at > now() OR (t.type = 'gateway' AND t.expires_at IS NULL))
                    AND CASE $3
                          WHEN 'client' THEN t.actor_id = $4 AND a.id IS NOT NULL
                                             AND a.disabled_at IS NULL
                          WHEN 'gateway' THEN t.site_id = $4
                          ELSE false
                        END)""",
            token_id,
            account_id,
            kind,
            owner_id,
        )
    )
