"""The one event model and the adapter protocol every gateway implements.

`PaymentEvent` is the only type that crosses from `providers/` into `service/`;
`GatewayAdapter` is a gateway's webhook side; providers/gateway.py puts the parts together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import msgspec

from providers.errors import UnknownAccountError


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

    @property
    def layer(self) -> int:
        """How far a payment got: news may move an order up the layers, never down (DESIGN.md §3).

        0 pending; 1 in flight or failed (a failed attempt may be followed by a paying one);
        2 canceled (final unless money moves after all); 3 succeeded; 4 refunded, partly or wholly.
        """
        return _LAYER[self]

    @property
    def is_paid(self) -> bool:
        """Money moved: succeeded, and the refund states that can only follow it."""
        return self.layer >= _PAID_LAYER

    @property
    def is_open(self) -> bool:
        """Not final yet: the reconciler asks the gateway about it (layers 0 and 1, `failed` included,
        since a failed attempt may be followed by a paying one). `orders_open_idx` covers these."""
        return self.layer <= 1


_PAID_LAYER = 3
_LAYER = {
    PaymentStatus.PENDING: 0,
    PaymentStatus.PROCESSING: 1,
    PaymentStatus.AUTHORIZED: 1,
    PaymentStatus.FAILED: 1,
    PaymentStatus.CANCELED: 2,
    PaymentStatus.SUCCEEDED: _PAID_LAYER,
    PaymentStatus.PARTIALLY_REFUNDED: 4,
    PaymentStatus.REFUNDED: 4,
}


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
    """Fields every gateway account has, and the credential rules every gateway shares.

    Loaded from the PAYRECON_GATEWAYS TOML file, one `[[<gateway>]]` table per account. A
    gateway's `Account` extends it and declares, as class variables:

    - `gateway`: its name, for error messages;
    - `credentials`: the fields that are credentials: each must be non-empty (a list: non-empty,
      and every element non-empty) — an empty secret would let anyone sign (issue 10.5);
    - `rotation`: `(list field, shorthand field)` of the secrets that may have signed a delivery,
      newest first (the first signs our own requests); the shorthand takes one string, as in
      DESIGN.md §7, and is folded into the list.

    Errors name the gateway and the account in one line; msgspec reports them as the table's
    validation error when PAYRECON_GATEWAYS is read.
    """

    gateway: ClassVar[str] = "gateway"
    credentials: ClassVar[tuple[str, ...]] = ()
    rotation: ClassVar[tuple[str, str | None] | None] = None

    account: str = "default"
    api_base: str
    query_concurrency: int = 5  # parallel status queries the reconciler may make on this account
    query_rate: float = 10.0  # status queries per second, at most
    timeout: float = 10.0  # seconds per status-API call
    # Source addresses (IPs or CIDRs) this account's webhooks may come from; empty: any. Enforced
    # at the webhook endpoint (engineer `edge`, issue 15), declared here with the account.
    allowed_sources: list[str] = []

    def __post_init__(self) -> None:
        if self.rotation is not None:
            self._fold_shorthand(*self.rotation)
        for name in self.credentials:
            value = getattr(self, name)
            if isinstance(value, str):
                empty = not value.strip()
            else:
                empty = not value or not all(isinstance(v, str) and v.strip() for v in value)
            if empty:
                what = "list at least one secret, none of them empty" if isinstance(value, list) else "not be empty"
                raise ValueError(f"[[{self.gateway}]] account {self.account!r}: {name} must {what}")

    def _fold_shorthand(self, many: str, one: str | None) -> None:
        if one is None or getattr(self, one) is None:
            return
        if getattr(self, many):
            raise ValueError(f"[[{self.gateway}]] account {self.account!r}: give {many} or {one}, not both")
        setattr(self, many, [getattr(self, one)])
        setattr(self, one, None)

    @property
    def signing_secret(self) -> str:
        """The newest of the rotated secrets: what our own requests are signed with."""
        if self.rotation is None:
            raise TypeError(f"[[{self.gateway}]] accounts rotate no secrets")
        secrets: list[str] = getattr(self, self.rotation[0])
        return secrets[0]


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


def lookup_account(gateway: str, accounts: Mapping[str, AccountT], name: str) -> AccountT:
    """The account `name` of `accounts`; UnknownAccountError (the same for every gateway) otherwise."""
    found = accounts.get(name)
    if found is None:
        # the held names are not listed: a webhook's error text may go back to whoever called the URL
        raise UnknownAccountError(f"no [[{gateway}]] account {name[:64]!r} in PAYRECON_GATEWAYS")
    return found


def utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class GatewayAdapter(Protocol):
    """The webhook side of a gateway (providers.gateway.Gateway.adapter); never touches the database.

    Built as `Adapter(accounts)` from the gateway's accounts in PAYRECON_GATEWAYS.
    """

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


Clock = Callable[[], datetime]
