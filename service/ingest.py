"""Webhook ingest: verify → parse → ledger → the gateway's answer, never acknowledging what was not stored.

Framework-free on purpose: `service.api.webhooks` turns HTTP into a `WebhookRequest` and an
`Ack` back into HTTP; everything that decides what a gateway hears lives here (DESIGN.md §4).

The answers, and why:
- verification fails → `adapter.reject` (4xx, or VNPay's 97/99) and a row in `rejected_deliveries`;
  the row is best effort, a refusal stays a refusal when it cannot be noted;
- verified, but it cannot be parsed or stored as sent (a shape the adapter does not read, a value
  PostgreSQL refuses, a bug) → the delivery is **held**: its raw request is stored in
  `rejected_deliveries` (`verified`), and the gateway is told to stop (`adapter.acknowledge([])`,
  or the adapter's own `hold(error)` answer), because redelivering the same bytes cannot cure it
  and the gateway would give up and lose it. Ops replay it once fixed (service/replay.py);
- the database is unreachable or busy (service/failures.py) → `adapter.retry_later` (503, VNPay 99);
  so is a held delivery whose row could not be written: never acknowledge what is not stored;
- every event committed → `adapter.acknowledge(outcome kinds)`. Each event is its own ledger
  transaction: if the second of two fails, the redelivery finds the first a duplicate, harmlessly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Coroutine
from typing import TypeVar

import asyncpg

from providers.base import Ack, GatewayAdapter, OutcomeKind, WebhookRequest
from providers.errors import GatewayError, MalformedError, PayreconError
from service import ledger, logs, rejections
from service.failures import refused_by_postgres, retry_can_cure
from service.metrics import WEBHOOKS_HELD, WEBHOOKS_IGNORED, WEBHOOKS_REJECTED, WEBHOOKS_UNAVAILABLE
from service.model import RawDelivery, Source
from service.refusals import RefusalSampler, source_of
from service.storable import UnstorableError, escape_text, storable

log = logging.getLogger(__name__)

# How long a delivery may wait for the database. A gateway gives up on a slow answer (Stripe
# after ~10 s, VNPay sooner) and counts it as a failure anyway, so a dead database must be
# answered "retry later" well before that instead of holding the request open.
CONNECT_WAIT = 3.0  # seconds for a connection to note a rejection
APPLY_BUDGET = 8.0  # seconds for all ledger transactions of one delivery

# Request headers kept beside a stored event (RawDelivery): what a signature or a decoder may
# need to re-check it later. Everything else (proxies' X-Forwarded-*, user agents) is noise.
_KEPT_HEADER = re.compile(r"^(content-type|.*signature.*)$")

UNKNOWN_PROVIDER_LABEL = "_unknown"  # metric label for /webhooks/<name we do not know>: bounded cardinality


class BodyTooLargeError(MalformedError):
    """The delivery is larger than PAYRECON_WEBHOOK_MAX_BODY; gateways send a few KB."""


class UnknownProviderError(MalformedError):
    """The URL names a gateway that is not configured in PAYRECON_GATEWAYS."""


class BodyTimeoutError(MalformedError):
    """The body did not arrive within PAYRECON_WEBHOOK_BODY_TIMEOUT: a slow or trickling client."""


class SourceNotAllowedError(GatewayError):
    """The client address is outside the gateway account's `allowed_sources`."""


def reason_of(error: BaseException) -> str:
    """The `rejected_deliveries.reason` slug: our error's class name in snake case, without `Error`.

    SignatureError → signature, UnknownAccountError → unknown_account. Anything else an
    adapter raises is a bug in the adapter: `adapter_error`, and the log has the traceback.
    """
    if not isinstance(error, PayreconError):
        return "adapter_error"
    name = type(error).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def raw_delivery(request: WebhookRequest) -> RawDelivery:
    headers = {name: escape_text(value) for name, value in request.headers.items() if _KEPT_HEADER.match(name)}
    return RawDelivery(body=request.body, headers=headers, query_string=request.query_string)


async def ingest(
    pool: asyncpg.Pool,
    provider: str,
    adapter: GatewayAdapter,
    request: WebhookRequest,
    *,
    refusals: RefusalSampler | None = None,
    commit: ledger.GroupCommit | None = None,
) -> Ack:
    """Handle one delivery for a configured gateway and return what the gateway must hear.

    `refusals` samples what a refusal costs (service/refusals.py); without one every refusal is a row.
    `commit` applies the events together with other deliveries' (the app's); without it each alone.
    """
    logs.bind(gateway=provider, account=request.account)
    try:
        adapter.verify(request)
    except Exception as error:  # an adapter's failure is the sender's problem or the adapter's bug: never a 500
        return await refuse(pool, provider, adapter, request, error, refusals=refusals)
    try:
        # storable() again here, though ledger.apply does it: a delivery is held whole, before any of
        # its events is applied
        events = [storable(event) for event in adapter.parse(request)]
    except Exception as error:  # signed, yet unreadable: the same bytes will fail the same way again
        return await hold(pool, provider, adapter, request, error)

    if not events:
        WEBHOOKS_IGNORED.labels(provider).inc()
        log.info(
            "webhook %s ignored: verified, no tracked event (account=%s, client %s, body sha256 %s)",
            provider,
            request.account,
            request.remote_addr,
            hashlib.sha256(request.body).hexdigest(),
        )
        return _answer(lambda: adapter.acknowledge([]), adapter, provider)

    raw = raw_delivery(request)

    async def apply_all() -> list[OutcomeKind]:
        kinds = []
        for event in events:
            if commit is None:
                outcome = await ledger.apply(pool, event, Source.WEBHOOK, raw=raw)
            else:
                outcome = await commit.apply(event, Source.WEBHOOK, raw=raw)
            with logs.bound(account=event.account, order_id=outcome.order_id, event_id=outcome.event_id):
                log.info("webhook %s event: %s", provider, outcome.kind, extra={"outcome": str(outcome.kind)})
            # A redelivery answers with its stored event's outcome (Outcome.answer), not a blanket "duplicate".
            kinds.append(outcome.answer)
        return kinds

    try:
        kinds = await within(APPLY_BUDGET, apply_all())
    except Exception as error:
        if retry_can_cure(error):  # includes TimeoutError: the budget ran out waiting for PostgreSQL
            WEBHOOKS_UNAVAILABLE.labels(provider).inc()
            log.warning(
                "webhook %s: database unavailable (%s: %s); answering retry-later", provider, _name(error), error
            )
            return _answer(adapter.retry_later, adapter, provider)
        return await hold(pool, provider, adapter, request, error, in_ledger=True)
    return _answer(lambda: adapter.acknowledge(kinds), adapter, provider)


async def hold(
    pool: asyncpg.Pool,
    provider: str,
    adapter: GatewayAdapter,
    request: WebhookRequest,
    error: Exception,
    *,
    in_ledger: bool = False,
) -> Ack:
    """Keep a verified delivery that cannot be processed as sent, and tell the gateway to stop.

    Stored in full (never sampled: it may be money), one row per distinct request. If even that
    row cannot be written, the gateway hears "retry later": its redelivery is then our only copy.
    """
    reason = held_reason(error, in_ledger=in_ledger)
    if isinstance(error, PayreconError) or reason == "unstorable":
        log.warning("webhook %s: verified delivery held for review (%s): %s", provider, reason, error)
    else:  # our bug (adapter or ledger): the traceback is what fixes it
        log.error("webhook %s: verified delivery held for review (%s)", provider, reason, exc_info=error)
    raw = raw_delivery(request)
    entry = rejections.rejection(
        provider=provider,
        account=request.account,
        reason=reason,
        detail=f"{_name(error)}: {error}",
        remote_addr=request.remote_addr,
        body=request.body,
        received_at=request.received_at,
        verified=True,
        method=request.method,
        query_string=request.query_string,
        headers=raw.headers,
    )
    try:
        row_id = await within(CONNECT_WAIT * 2, rejections.record(pool, entry, wait=CONNECT_WAIT))
    except Exception as store_error:
        WEBHOOKS_UNAVAILABLE.labels(provider).inc()
        log.warning(
            "webhook %s: could not store a held delivery (body sha256 %s): %s: %s; answering retry-later",
            provider,
            entry.body_sha256,
            _name(store_error),
            store_error,
        )
        return _answer(adapter.retry_later, adapter, provider)
    WEBHOOKS_HELD.labels(provider, reason).inc()
    log.warning("webhook %s: held as rejected delivery %d (`payrecon replay %d` once fixed)", provider, row_id, row_id)
    return _answer(lambda: held_answer(adapter, error), adapter, provider)


def held_reason(error: BaseException, *, in_ledger: bool) -> str:
    """`malformed`, `unstorable` (a value PostgreSQL refuses), `ledger_error` or `adapter_error` (bugs)."""
    if isinstance(error, UnstorableError) or (in_ledger and refused_by_postgres(error)):
        return "unstorable"
    if in_ledger:
        return "ledger_error"
    return reason_of(error)


def held_answer(adapter: GatewayAdapter, error: Exception) -> Ack:
    """What a gateway hears for a held delivery: "received, stop sending".

    An adapter may define `hold(error) -> Ack` when its gateway expects another final answer;
    otherwise it is the acknowledgement of a delivery that carried nothing to apply.
    """
    answer: Callable[[Exception], Ack] | None = getattr(adapter, "hold", None)
    return answer(error) if answer is not None else adapter.acknowledge([])


async def refuse(
    pool: asyncpg.Pool,
    provider: str,
    adapter: GatewayAdapter,
    request: WebhookRequest,
    error: Exception,
    *,
    body_size: int | None = None,
    refusals: RefusalSampler | None = None,
) -> Ack:
    """Note a refused delivery (row or tally, metric, log) and return the gateway's own rejection answer."""
    await note_refusal(pool, provider, request, error, known_provider=True, body_size=body_size, refusals=refusals)
    return _answer(lambda: adapter.reject(error), adapter, provider, fallback=400)


async def note_refusal(
    pool: asyncpg.Pool,
    provider: str,
    request: WebhookRequest,
    error: BaseException,
    *,
    known_provider: bool,
    body_size: int | None = None,
    refusals: RefusalSampler | None = None,
) -> None:
    """WEBHOOKS_REJECTED, and — within the sampler's budget — a full row and a log line; else a tally.

    Never raises for storage: a refusal stays a refusal when it cannot be noted.
    """
    reason = reason_of(error)
    WEBHOOKS_REJECTED.labels(provider if known_provider else UNKNOWN_PROVIDER_LABEL, reason).inc()
    entry = rejections.rejection(
        provider=provider,
        account=request.account,
        reason=reason,
        detail=f"{_name(error)}: {error}" if reason == "adapter_error" else str(error),
        remote_addr=request.remote_addr,
        body=request.body,
        body_size=body_size,
        received_at=request.received_at,
        method=request.method,
        query_string=request.query_string,
        headers=raw_delivery(request).headers,
        # Within the budget the body is kept too (a signature refused under a stale secret can be
        # replayed once the secret is fixed); without a sampler nothing bounds it, so only its hash.
        keep_body=refusals is not None,
    )
    if refusals is not None:
        key = (entry.provider, reason, source_of(request.remote_addr))
        if not refusals.admit(key):
            refusals.tally(key, entry.body_sha256, request.received_at)
            return
    if reason == "adapter_error":
        log.error("webhook %s: adapter raised %s; refusing the delivery", provider, _name(error), exc_info=error)
    else:
        log.info(
            "webhook %s refused: %s: %s (client %s)",
            provider,
            reason,
            error,
            request.remote_addr,
            extra={"outcome": f"rejected:{reason}"},
        )
    try:
        await within(CONNECT_WAIT * 2, rejections.record(pool, entry, wait=CONNECT_WAIT))
    except Exception as exc:  # whatever the database does, noting a delivery never turns it into a 500
        # The gateway still hears its answer: it does not depend on our being able to note it.
        log.warning(
            "webhook %s: could not record rejected delivery (reason %s, body sha256 %s): %s: %s",
            provider,
            reason,
            entry.body_sha256,
            _name(exc),
            exc,
        )


# Database work abandoned at its deadline, still unwinding (see `within`); kept so it is not
# garbage-collected mid-flight and so its final error is read, not reported as "never retrieved".
_unwinding: set[asyncio.Task[object]] = set()

T = TypeVar("T")


async def within(budget: float, work: Coroutine[object, object, T]) -> T:
    """Await `work` for at most `budget` seconds, then raise TimeoutError — truly at the deadline.

    A plain `asyncio.timeout` is not enough: cancelling a transaction on a stalled connection
    runs its ROLLBACK on that same connection, which waits for the driver's command timeout
    (30 s) while the gateway waits for us. Here the work is cancelled and left to unwind in
    the background; the webhook is answered now. Whatever the work did or did not commit, the
    gateway's redelivery settles it: the ledger is idempotent.
    """
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), budget)
    except (TimeoutError, asyncio.CancelledError):
        if not task.done():
            task.cancel()
            _unwinding.add(task)
            task.add_done_callback(_unwound)
        raise


def _unwound(task: asyncio.Task[object]) -> None:
    _unwinding.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.info("abandoned database work ended with %s: %s", _name(error), error)


def _answer(make: Callable[[], Ack], adapter: GatewayAdapter, provider: str, *, fallback: int = 503) -> Ack:
    # An adapter that cannot even build its answer must not turn into a 500: the gateway gets
    # a plain non-2xx (it redelivers) and the log the traceback.
    try:
        return make()
    except Exception:
        log.exception("webhook %s: adapter %s failed to build its answer", provider, type(adapter).__name__)
        return Ack(fallback, b'{"error":"internal"}', "application/json")


def _name(error: BaseException) -> str:
    return type(error).__name__
