"""The one event model and the adapter protocol every gateway implements.

`PaymentEvent` is the only type that crosses from `providers/` into `service/`;
`GatewayAdapter` is the whole surface a gateway module offers (DESIGN.md §2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import httpx
import msgspec

from providers.acceptance import OrderRules


class PaymentStatus(StrEnum):
    """What a payment is, independent of the gateway that says so."""

    PENDING = "pending"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class OutcomeKind(StrEnum):
    """What the ledger did with one event; adapters turn it into the gateway's answer."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNKNOWN_ORDER = "unknown_order"
    ANOMALY = "anomaly"
    IGNORED = "ignored"


class PaymentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One normalized statement of a gateway about one payment."""

    provider: str
    dedupe_key: str  # gateway event id, or a composite for IPNs without one (reference/vectors.json)
    account: str  # the gateway account the statement came from
    reference: str  # what the gateway echoes: VNPay vnp_TxnRef, MoMo orderId, Stripe PaymentIntent id
    status: PaymentStatus
    amount: int  # minor units of `currency`; VND has none
    currency: str  # ISO 4217, upper case
    order_id: str | None = None  # our order id when the gateway carries it (Stripe metadata.order_id)
    provider_payment_id: str | None = None  # PaymentIntent id / MoMo transId / VNPay vnp_TransactionNo
    refunded_amount: int | None = None  # cumulative, on refund events
    occurred_at: datetime | None = None  # the gateway's own time; for a status query, the time we asked
    reason: str | None = None  # gateway code and text, e.g. "vnpay:24 customer canceled"
    flag: str | None = None  # a gateway-side condition ops must see (fraud review, reversal): becomes an anomaly
    payload: dict[str, Any] = {}  # the verified payload, kept for audit


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery exactly as it reached us: what signatures are computed over."""

    method: str
    body: bytes
    headers: dict[str, str]  # names lower-cased
    query_string: str  # raw and undecoded, as on the wire (VNPay signs it)
    account: str | None = None  # the {account} of /webhooks/{provider}/{account}, if the URL named one
    received_at: datetime
    remote_addr: str | None = None


class StatusQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What a gateway's status API needs to know about one payment attempt of an order."""

    order_id: str
    account: str
    reference: str
    amount: int
    currency: str
    created_at: datetime
    provider_payment_id: str | None = None
    provider_data: dict[str, Any] = {}  # e.g. VNPay's vnp_create_date, needed by querydr


class Ack(msgspec.Struct, frozen=True):
    """The HTTP answer a gateway expects."""

    status_code: int
    body: bytes = b""
    content_type: str | None = None


class GatewayAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields every gateway account has; each gateway's `Account` extends it.

    Loaded from the PAYRECON_GATEWAYS TOML file, one `[[<gateway>]]` table per account.
    """

    account: str = "default"
    api_base: str
    query_concurrency: int = 5  # parallel status queries the reconciler may make on this account
    query_rate: float = 10.0  # status queries per second, at most
    timeout: float = 10.0  # seconds per status-API call


AccountT = TypeVar("AccountT", bound=GatewayAccount)


def index_accounts(gateway: str, accounts: Iterable[AccountT], by: str = "account") -> dict[str, AccountT]:
    """`accounts` keyed by their field `by` (the account name, a partner code…); a key held twice is an error."""
    found: dict[str, AccountT] = {}
    for account in accounts:
        key: str = getattr(account, by)
        if key in found:
            raise ValueError(f"{gateway}: {by} {key!r} is configured twice in PAYRECON_GATEWAYS")
        found[key] = account
    return found


def utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class GatewayAdapter(Protocol):
    """What a gateway module offers. Found through the `payrecon.providers` entry-point group.

    An adapter is built as `Adapter(accounts, clock=...)` from its gateway's accounts in
    PAYRECON_GATEWAYS; it never touches the database or the web framework.
    """

    name: ClassVar[str]
    order_rules: ClassVar[OrderRules]  # what it accepts as an order (currencies, limits, provider_data)
    Account: ClassVar[type[GatewayAccount]]  # the gateway's subclass; PAYRECON_GATEWAYS tables decode into it

    def __init__(self, accounts: Sequence[GatewayAccount], *, clock: Clock = ...) -> None:
        """Hold these accounts (each an instance of `Account`); `clock` is the time status answers carry."""

    @property
    def accounts(self) -> Mapping[str, GatewayAccount]:
        """Account name → its configuration (read-only here, so an adapter may hold its own subclass)."""

    def verify(self, request: WebhookRequest) -> None:
        """Check the signature over the raw request; raise SignatureError, ReplayError or MalformedError."""

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        """Turn a verified request into events; `[]` for what we do not track (acknowledged as ignored)."""

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        """The answer once the ledger has committed the request's events (empty: nothing to apply)."""

    def reject(self, error: Exception) -> Ack:
        """The answer to a request that failed verification or parsing."""

    def retry_later(self) -> Ack:
        """The answer that makes the gateway deliver again (our database is unavailable)."""

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        """Ask the gateway's status API; None when the gateway does not know the payment."""


Clock = Callable[[], datetime]
