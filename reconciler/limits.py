"""How hard a run may push each gateway account: concurrency, rate and a circuit breaker (DESIGN.md §6 step 2).

Limits are per (gateway, account) because that is what `GatewayAccount.query_concurrency` and
`query_rate` describe: a merchant's two MoMo partner codes are two separate quotas. The breaker
lives for one run in one worker: after `threshold` consecutive failed queries the account is
skipped for the rest of the run and its remaining orders get `error` findings at once, instead of
each spending the whole retry budget against a gateway that is down. The next run starts closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from providers.base import GatewayAccount
from providers.errors import GatewayError, GatewayUnavailableError
from providers.gateway import Connected

T = TypeVar("T")
BREAKER_THRESHOLD = 5  # consecutive failed queries that open the breaker
MAX_PAUSE = 30.0  # a Retry-After longer than this is not waited out inside a run


class CircuitOpenError(GatewayError):
    """The account failed too often in this run: it is not asked again until the next run."""


def accounts_of(gateway: Connected) -> list[GatewayAccount]:
    """The accounts a connected gateway holds."""
    return list(gateway.accounts.values())


class GatewayLimiter:
    """One account's budget within a run: at most `concurrency` queries in flight, `rate` per second."""

    def __init__(
        self,
        name: str,
        *,
        concurrency: int,
        rate: float,
        threshold: int = BREAKER_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.threshold = threshold
        self.clock = clock
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._next = 0.0  # the earliest time the next query may start
        self._failures = 0
        self.last_error: str | None = None
        self.open = False

    @property
    def failures(self) -> int:
        """Consecutive failed queries so far."""
        return self._failures

    async def call(self, query: Callable[[], Awaitable[T]]) -> T:
        """Run one status query inside the limits; raise CircuitOpenError once the breaker is open."""
        self._check()
        async with self._slots:
            await self._pace()
            try:
                result = await query()
            except Exception as exc:
                self._failed(exc)
                raise
            self._failures = 0
            return result

    def _check(self) -> None:
        if self.open:
            raise CircuitOpenError(
                f"{self.name}: not asked, circuit open after {self.threshold} consecutive failures "
                f"(last: {self.last_error})"
            )

    async def _pace(self) -> None:
        # Spacing instead of a bursty bucket: queries start at most every 1/rate seconds. No turn
        # is booked ahead: a query that waited looks again, so a Retry-After or an opened breaker
        # that arrived meanwhile holds back the queries already waiting too, not only later ones.
        while True:
            self._check()
            now = self.clock()
            if now >= self._next:
                self._next = now + self.interval
                return
            await asyncio.sleep(self._next - now)

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self.last_error = str(exc) or type(exc).__name__
        if isinstance(exc, GatewayUnavailableError) and exc.retry_after:
            # The gateway asked for quiet (429/503 Retry-After): every query of this account waits.
            self._next = max(self._next, self.clock() + min(exc.retry_after, MAX_PAUSE))
        if self._failures >= self.threshold:
            self.open = True


class Limits:
    """The limiters of one run, built lazily from the adapters' account settings."""

    def __init__(self, gateways: Mapping[str, Connected], *, threshold: int = BREAKER_THRESHOLD) -> None:
        self._accounts: dict[tuple[str, str], GatewayAccount] = {
            (name, account.account): account for name, adapter in gateways.items() for account in accounts_of(adapter)
        }
        self.threshold = threshold
        self._limiters: dict[tuple[str, str], GatewayLimiter] = {}

    def for_account(self, provider: str, account: str) -> GatewayLimiter:
        key = (provider, account)
        limiter = self._limiters.get(key)
        if limiter is None:
            settings = self._accounts.get(key)
            limiter = GatewayLimiter(
                f"{provider}/{account}",
                concurrency=settings.query_concurrency if settings else 1,
                rate=settings.query_rate if settings else 1.0,
                threshold=self.threshold,
            )
            self._limiters[key] = limiter
        return limiter

    def capacity(self) -> int:
        """Queries that may be in flight at once over every account: how many orders to keep going."""
        return max(1, sum(max(1, a.query_concurrency) for a in self._accounts.values()))

    def items(self) -> list[tuple[tuple[str, str], GatewayLimiter]]:
        """Every (gateway, account) limiter this run has used."""
        return list(self._limiters.items())

    def opened(self) -> list[GatewayLimiter]:
        return [limiter for limiter in self._limiters.values() if limiter.open]
