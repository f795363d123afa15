"""Token buckets in the UNLOGGED table ``rate_buckets``: one statement per charge.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; a
request takes one. The refill, the take and the answer happen in one
``INSERT ... ON CONFLICT DO UPDATE``, which Postgres runs under the row's lock,
so replicas charging the same bucket at once each see the other's take.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerogate.api.db import Connection


@dataclass(frozen=True, slots=True)
class Charge:
    allowed: bool
    #: Tokens left after this charge (fractional; below 1 when refused).
    tokens: float


_CHARGE = """
INSERT INTO rate_buckets AS b (key, tokens, allowed, updated_at)
VALUES ($1, $2::float8 - 1, true, clock_timestamp())
ON CONFLICT (key) DO UPDATE SET
    tokens = least($2::float8, b.tokens + $3::float8 * greatest(0, extract(epoch FROM
                 excluded.updated_at - b.updated_at)::float8))
             - CASE WHEN least($2::float8, b.tokens + $3::float8 * greatest(0, extract(epoch
                 FROM excluded.updated_at - b.updated_at)::float8)) >= 1 THEN 1 ELSE 0 END,
    allowed = least($2::float8, b.tokens + $3::float8 * greatest(0, extract(epoch FROM
                 excluded.updated_at - b.updated_at)::float8)) >= 1,
    updated_at = excluded.updated_at
RETURNING allowed, tokens
"""


async def charge(conn: Connection, key: str, *, burst: int, rate: float) -> Charge:
    record = await conn.fetchrow(_CHARGE, key, float(burst), rate)
    return Charge(bool(record["allowed"]), float(record["tokens"]))


async def forget_full(conn: Connection, older_than_secs: float) -> int:
    """Delete buckets untouched for so long that they are full again (as good as absent)."""
    status = await conn.execute(
        "DELETE FROM rate_buckets WHERE updated_at < clock_timestamp() - make_interval(secs => $1)",
        older_than_secs,
    )
    return int(status.split()[-1])
