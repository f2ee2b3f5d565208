"""Gateway knowledge: one subpackage per gateway, nothing of ours imported.

Only `PaymentEvent` (and its `PaymentStatus`) crosses from here into `service/`.
"""

from providers.base import (
    Ack,
    GatewayAdapter,
    OutcomeKind,
    PaymentEvent,
    PaymentStatus,
    StatusQuery,
    WebhookRequest,
)
from providers.errors import (
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    MalformedError,
    PayreconError,
    ReplayError,
    SignatureError,
    UnknownAccountError,
)

__all__ = [
    "Ack",
    "GatewayAdapter",
    "GatewayError",
    "GatewayRejectedError",
    "GatewayUnavailableError",
    "MalformedError",
    "OutcomeKind",
    "PaymentEvent",
    "PaymentStatus",
    "PayreconError",
    "ReplayError",
    "SignatureError",
    "StatusQuery",
    "UnknownAccountError",
    "WebhookRequest",
]
