"""ZaloPay, installed from examples/, against payrecon's contract kit, with its code table.

payrecon's own suite runs the kit for every installed gateway with the defaults; here the kit
also checks that every row of ZaloPay's query code table maps (NOTES.md §4).
"""

from __future__ import annotations

from typing import Any, ClassVar

from payrecon_zalopay.status import CODES
from providers.codes import Code
from providers.testing import GatewayContract


class TestZaloPayContract(GatewayContract):
    gateway = "zalopay"
    code_tables: ClassVar[dict[str, dict[Any, Code]]] = {"query (return_code, sub_return_code)": dict(CODES)}
