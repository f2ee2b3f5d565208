"""Calling a gateway's status API: one request with timeouts, bounded retries and typed errors.

Retries live here, not in a transport layer, because only the caller knows a request is
read-only (every status query is, even MoMo's and VNPay's POSTs) and what counts as
"try again" (timeouts, 5xx, 429 with its Retry-After).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic

import httpx
import msgspec

from providers.base import AccountT, Clock, index_accounts, lookup_account, utcnow
from providers.errors import GatewayUnavailableError


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    attempts: int = 4  # total tries, the first included
    base_delay: float = 0.5  # seconds; doubled per retry, with full jitter
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is not waited out: the run moves on


DEFAULT_POLICY = RetryPolicy()
Sleep = Callable[[float], Awaitable[None]]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, full jitter."""
    return random.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))  # noqa: S311


# An in-band "try again" (MoMo's resultCode 43, VNPay's querydr 94/99/08 over HTTP 200): the
# text for the error when the budget is spent, or None when the answer is final.
RetryIf = Callable[[httpx.Response], str | None]


def never(response: httpx.Response) -> str | None:
    return None


async def send_with_retry(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    gateway: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    request_timeout: float | None = None,
    sleep: Sleep = asyncio.sleep,
    retry_if: RetryIf = never,
    content: bytes | Callable[[], bytes] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a read-only request; return the first response that is neither 5xx, 429 nor `retry_if`.

    One budget covers every kind of retry: at most `policy.attempts` calls, whatever mix of
    timeouts, 5xx, 429 and in-band codes caused them. `content` may be a function, called per
    attempt, for gateways that want a fresh request id on every call (MoMo, VNPay).

    Raises GatewayUnavailableError once the budget is spent, carrying the last Retry-After
    so a scheduler can honour it.
    """
    last_error = ""
    retry_after: float | None = None
    attempt = 0
    for attempt in range(1, policy.attempts + 1):
        body = content() if callable(content) else content
        try:
            response = await client.request(method, url, timeout=request_timeout, content=body, **kwargs)
        except httpx.TimeoutException as exc:
            last_error = f"timeout ({type(exc).__name__})"
            wait = backoff(policy, attempt)
        except httpx.TransportError as exc:
            last_error = f"connection failed ({type(exc).__name__}: {exc})"
            wait = backoff(policy, attempt)
        else:
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = retry_after_seconds(response)
                last_error = f"HTTP {response.status_code}"
                if retry_after is not None and retry_after > policy.max_retry_after:
                    break
                wait = retry_after if retry_after is not None else backoff(policy, attempt)
            else:
                busy = retry_if(response)
                if busy is None:
                    return response
                last_error, wait = busy, backoff(policy, attempt)
        if attempt < policy.attempts:
            await sleep(wait)
    raise GatewayUnavailableError(
        f"{gateway} status API: {last_error} after {attempt} attempt(s)", retry_after=retry_after
    )


class ApiClient(Generic[AccountT]):
    """What every status client holds: its gateway's accounts, the clock answers carry, one retry budget.

    A gateway's status client subclasses it, names its gateway and adds `fetch_status`.
    """

    gateway: ClassVar[str]

    def __init__(
        self,
        accounts: Sequence[AccountT],
        *,
        clock: Clock = utcnow,
        retry: RetryPolicy = DEFAULT_POLICY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.accounts = index_accounts(self.gateway, accounts)
        self.clock = clock
        self.retry = retry
        self.sleep = sleep

    def account(self, name: str) -> AccountT:
        return lookup_account(self.gateway, self.accounts, name)
