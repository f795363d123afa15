"""The api's two rate limits (issue 12, item 6).

* **Per account**, on every authenticated REST call: ``ZG_RATE_LIMIT_ACCOUNT_PER_S``
  sustained, ``ZG_RATE_LIMIT_ACCOUNT_BURST`` at once. Charged by ``authenticate``
  on the connection that verified the token (one more statement, no more pool
  round trip), only once the token is known good: a stranger who knows a token's
  id cannot drain its account's bucket.
* **Per source IP**, stricter, on requests that prove nobody: every sign-in
  request, and every failed authentication (``ZG_RATE_LIMIT_IP_*``).

Buckets live in Postgres (:mod:`.repository`), so every replica draws from the
same ones. Each replica also remembers, in memory, which IPs it has seen
refused and until when: while that lasts it answers 429 to them without
touching the database or checking their token (a replica that has not seen the
refusal finds the empty bucket on its first charge). Refusals are ``429``
problem+json with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from zerogate.api.db import Connection
from zerogate.api.errors import RateLimited
from zerogate.api.ratelimit import repository
from zerogate.api.settings import ApiSettings

#: IPs remembered as refused, per replica (oldest forgotten first).
MAX_REMEMBERED_IPS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    per_s: float
    burst: int

    def retry_after(self, tokens: float) -> int:
        """Whole seconds until the bucket holds one token again."""
        return max(1, math.ceil((1.0 - tokens) / self.per_s))


class RateLimiter:
    def __init__(self, *, account: Limit, ip: Limit, enabled: bool = True) -> None:
        self.account = account
        self.ip = ip
        self.enabled = enabled
        self._refused_ips: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> RateLimiter:
        return cls(
            account=Limit(settings.rate_limit_account_per_s, settings.rate_limit_account_burst),
            ip=Limit(settings.rate_limit_ip_per_s, settings.rate_limit_ip_burst),
            enabled=settings.rate_limit_enabled,
        )

    async def charge_account(self, conn: Connection, account_id: uuid.UUID) -> None:
        if not self.enabled:
            return
        result = await repository.charge(
            conn, f"account:{account_id}", burst=self.account.burst, rate=self.account.per_s
        )
        if not result.allowed:
            raise RateLimited(
                "this account's API rate limit is exhausted (ZG_RATE_LIMIT_ACCOUNT_*)",
                retry_after=self.account.retry_after(result.tokens),
            )

    def check_ip_not_refused(self, ip: str | None) -> None:
        """429 at once (no database) when this replica has refused ``ip`` lately."""
        if not self.enabled or ip is None:
            return
        until = self._refused_ips.get(ip)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._refused_ips[ip]
            return
        raise RateLimited(
            "too many unauthenticated or failed requests from this address (ZG_RATE_LIMIT_IP_*)",
            retry_after=math.ceil(left),
        )

    async def charge_ip(self, conn: Connection, ip: str | None) -> None:
        """Take one from the source IP's bucket; 429 when it is empty."""
        if not self.enabled or ip is None:
            return
        self.check_ip_not_refused(ip)
        result = await repository.charge(conn, f"ip:{ip}", burst=self.ip.burst, rate=self.ip.per_s)
        if not result.allowed:
            wait = self.ip.retry_after(result.tokens)
            self._refused_ips[ip] = time.monotonic() + wait
            self._refused_ips.move_to_end(ip)
            while len(self._refused_ips) > MAX_REMEMBERED_IPS:
                self._refused_ips.popitem(last=False)
            raise RateLimited(
                "too many unauthenticated or failed requests from this address "
                "(ZG_RATE_LIMIT_IP_*)",
                retry_after=wait,
            )

    def refill_secs(self) -> float:
        """Time for an empty bucket of either kind to be full again."""
        return max(self.account.burst / self.account.per_s, self.ip.burst / self.ip.per_s)
