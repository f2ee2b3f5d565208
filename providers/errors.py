"""The error tree shared by adapters, the ledger and the reconciler.

Each error carries a message that tells an integrator what was expected, e.g.
"no v1 signature matched any of 2 secrets; is PAYRECON_GATEWAYS' webhook_secrets current?".
"""

from __future__ import annotations


class PayreconError(Exception):
    """Root of every error payrecon raises on purpose."""


class GatewayError(PayreconError):
    """Something about a gateway: its request to us, or our call to it."""


class SignatureError(GatewayError):
    """The request is not signed by a secret we hold (missing, wrong or tampered)."""


class ReplayError(GatewayError):
    """Correctly signed, but outside the replay window (Stripe timestamp tolerance)."""


class MalformedError(GatewayError):
    """The request cannot be read: bad JSON, missing fields, wrong types."""


class UnknownAccountError(MalformedError):
    """The request names a gateway account (partner code, terminal, URL account) we do not hold."""


class InvalidAmountError(MalformedError):
    """The request states an amount no order can have (VNPay: a vnp_Amount that is not VND × 100)."""


class GatewayUnavailableError(GatewayError):
    """The gateway's status API did not answer usefully after the retry budget (timeouts, 5xx, 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GatewayRejectedError(GatewayError):
    """The gateway answered our call with a definite refusal (bad credentials, bad request, bad signature)."""
