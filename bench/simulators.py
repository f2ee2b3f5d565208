"""The three gateway simulators in a process of their own, for bench/reconcile.py.

    .venv/bin/python bench/simulators.py --paid rA:10000 --paid rB:3000

Creates, for every `PREFIX:COUNT`, payments for orders `PREFIX-0` … `PREFIX-(COUNT-1)` (order i
at gateway GATEWAYS[i % 3], its reference from `reference()`) and marks them succeeded with no
webhook sent. Serves each simulator on a free loopback port and prints ONE JSON line: the
account table of each gateway (with its base URL). Then serves until stdin closes or SIGTERM.
Latency is set at run time through each simulator's `PUT /_sim/faults` (`api_latency`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from providers.base import PaymentStatus
from providers.registry import gateways
from service.serving import serving

GATEWAYS = ("stripe", "momo", "vnpay")
PRICES = {"stripe": (1999, "USD"), "momo": (150_000, "VND"), "vnpay": (250_000, "VND")}
# VNPay's querydr needs the payment's create date; one fixed clock makes it known to the benchmark.
VNPAY_CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
VNPAY_CREATE_DATE = "20260101190000"  # VNPay's GMT+7 wall clock of VNPAY_CREATED


def gateway_of(i: int) -> str:
    return GATEWAYS[i % 3]


def reference(gateway: str, order_id: str) -> str:
    return f"pi_{order_id.replace('-', '_')}" if gateway == "stripe" else order_id


def provider_data(gateway: str) -> dict[str, str]:
    return {"vnp_create_date": VNPAY_CREATE_DATE} if gateway == "vnpay" else {}


def build(paid: list[tuple[str, int]]) -> dict[str, Any]:
    sims: dict[str, Any] = {}
    for name in GATEWAYS:
        make = gateways()[name].simulator
        sims[name] = make(clock=lambda: VNPAY_CREATED) if name == "vnpay" else make()
    for prefix, count in paid:
        for i in range(count):
            name = gateway_of(i)
            order_id = f"{prefix}-{i}"
            amount, currency = PRICES[name]
            payment = sims[name].create_payment(
                order_id=order_id, amount=amount, currency=currency, reference=reference(name, order_id)
            )
            sims[name].set_status(payment.reference, PaymentStatus.SUCCEEDED)
    created = sims["vnpay"].payments
    if created:
        assert next(iter(created.values())).create_date == VNPAY_CREATE_DATE, "VNPay's date format changed"
    return sims


async def main(paid: list[tuple[str, int]]) -> None:
    sims = build(paid)
    async with contextlib.AsyncExitStack() as stack:
        urls = {n: await stack.enter_async_context(serving(s.asgi_app())) for n, s in sims.items()}
        print(json.dumps({n: s.gateway_config(urls[n]) for n, s in sims.items()}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paid", action="append", default=[], help="PREFIX:COUNT of orders paid at the gateways")
    args = parser.parse_args()
    asyncio.run(main([(p.split(":")[0], int(p.split(":")[1])) for p in args.paid]))
