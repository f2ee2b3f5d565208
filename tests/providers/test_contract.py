"""The contract kit (providers/testing.py) run against every registered gateway.

The built-ins get their code tables and in-band retry rule; any other installed gateway (a
plugin such as examples/payrecon-zalopay) gets the battery with the kit's defaults, so a
package that is installed but breaks the contract fails here too.
"""

from __future__ import annotations

import httpx

from providers.momo.wire import RESULT_CODES
from providers.registry import gateways
from providers.testing import GatewayContract
from providers.vnpay.wire import QUERYDR_CODES, RESPONSE_CODES, TRANSACTION_STATUSES

BUILT_IN = ("stripe", "momo", "vnpay")


def test_every_builtin_gateway_is_registered() -> None:
    assert set(BUILT_IN) <= set(gateways())


class TestStripeContract(GatewayContract):
    gateway = "stripe"


class TestMomoContract(GatewayContract):
    gateway = "momo"
    code_tables = {"resultCode": RESULT_CODES}


class TestVnpayContract(GatewayContract):
    gateway = "vnpay"
    code_tables = {
        "vnp_ResponseCode": RESPONSE_CODES,
        "vnp_TransactionStatus": TRANSACTION_STATUSES,
        "querydr vnp_ResponseCode": QUERYDR_CODES,
    }

    def asks_for_redelivery(self, response: httpx.Response) -> bool:
        # reference/vnpay.md §5: VNPay reads the JSON, and retries RspCode 99 over HTTP 200
        return response.status_code == 200 and response.json().get("RspCode") == "99"


# Every other installed gateway, with the kit's defaults.
for _name in gateways():
    if _name not in BUILT_IN:
        globals()[f"Test{_name.title()}Contract"] = type(
            f"Test{_name.title()}Contract", (GatewayContract,), {"gateway": _name}
        )
