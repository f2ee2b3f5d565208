"""Benchmark: webhook verification + parsing per gateway, on the published test vectors.

    .venv/bin/python bench/signatures.py [--seconds 1.0]

Prints deliveries per second for verify alone and verify+parse, per gateway, and the ratio
to the slowest. Pure CPU: no database, no HTTP. It bounds what one ingest worker can do
before PostgreSQL is even involved.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from providers.base import WebhookRequest
from providers.momo import Account as MomoAccount
from providers.momo import Adapter as MomoAdapter
from providers.stripe import Account as StripeAccount
from providers.stripe import Adapter as StripeAdapter
from providers.vnpay import Account as VnpayAccount
from providers.vnpay import Adapter as VnpayAdapter

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vectors.json"


def deliveries() -> dict[str, tuple[object, WebhookRequest]]:
    vectors = {v["id"]: v for v in json.loads(VECTORS.read_text())["vectors"]}
    now = datetime.now(UTC)
    stripe = vectors["stripe-01"]
    momo = vectors["momo-01"]
    vnpay = vectors["vnpay-01"]
    stripe_adapter = StripeAdapter([StripeAccount(api_key="sk_test_x", webhook_secrets=[stripe["secret"]])])
    momo_adapter = MomoAdapter(
        [
            MomoAccount(
                partner_code=momo["credentials"]["partnerCode"],
                access_key=momo["credentials"]["accessKey"],
                secret_keys=[momo["secret"]],
            )
        ]
    )
    vnpay_adapter = VnpayAdapter(
        [VnpayAccount(tmn_code=vnpay["credentials"]["vnp_TmnCode"], hash_secrets=[vnpay["secret"]])]
    )

    def request(vector: dict, method: str = "POST") -> WebhookRequest:
        raw = vector["input"]
        # Stripe judges the timestamp against the time of receipt: receive it when the vector says
        received = datetime.fromtimestamp(vector["now"], UTC) if "now" in vector else now
        return WebhookRequest(
            method=method,
            body=raw.get("body", "").encode(),
            headers={k.lower(): v for k, v in raw.get("headers", {}).items()},
            query_string=raw.get("query_string", "") or urlsplit(raw.get("url", "")).query,
            received_at=received,
        )

    return {
        "stripe": (stripe_adapter, request(stripe)),
        "momo": (momo_adapter, request(momo)),
        "vnpay": (vnpay_adapter, request(vnpay, "GET")),
    }


def rate(fn, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        count += 200
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    results = {}
    for name, (adapter, req) in deliveries().items():
        verify = rate(lambda a=adapter, r=req: a.verify(r), args.seconds)
        both = rate(lambda a=adapter, r=req: (a.verify(r), a.parse(r)), args.seconds)
        results[name] = (verify, both)
    slowest = min(both for _, both in results.values())
    print(f"{'gateway':<8} {'verify/s':>12} {'verify+parse/s':>16} {'ratio':>7}")
    for name, (verify, both) in results.items():
        print(f"{name:<8} {verify:>12,.0f} {both:>16,.0f} {both / slowest:>6.2f}x")


if __name__ == "__main__":
    main()
