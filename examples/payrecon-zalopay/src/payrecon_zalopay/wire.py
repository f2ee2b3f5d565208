"""ZaloPay's wire formats: the callback, the query API and the callback acknowledgement.

Field names are ZaloPay's own (snake_case, NOTES.md §2-§4). Numbers ZaloPay documents as
`long` are JSON integers; a float is refused at decode time. Payloads never forbid unknown
fields: ZaloPay may add some, and the mac covers the `data` string whatever it holds.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

import msgspec

Long = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class CallbackType(IntEnum):
    """The callback's `type` (NOTES.md §2)."""

    ORDER = 1  # a payment of an order created with /v2/create
    AGREEMENT = 2  # a tokenization (binding) agreement: not a payment we track


class Callback(msgspec.Struct, kw_only=True):
    """What ZaloPay POSTs to the callback URL: `data` is a JSON document *as a string*, signed as is."""

    data: str
    mac: str
    type: int = CallbackType.ORDER


class CallbackData(msgspec.Struct, kw_only=True):
    """The `data` of an order callback. ZaloPay sends one only once it has the money (§2)."""

    app_id: int
    app_trans_id: str
    app_time: Long
    app_user: str = ""
    amount: Long  # VND received for the order
    embed_data: str = "{}"
    item: str = "[]"
    zp_trans_id: Long  # ZaloPay's transaction id: the payment's id
    server_time: Long  # when ZaloPay made the transaction, epoch milliseconds
    channel: int = 0
    merchant_user_id: str = ""
    user_fee_amount: Long = 0
    discount_amount: Long = 0


class CallbackAnswer(msgspec.Struct, kw_only=True):
    """Our answer to a callback, read by ZaloPay in the body (§3)."""

    return_code: int
    return_message: str


class QueryRequest(msgspec.Struct, kw_only=True):
    """`POST /v2/query`, sent form-encoded as in ZaloPay's SDK (§4)."""

    app_id: int
    app_trans_id: str
    mac: str


class QueryResponse(msgspec.Struct, kw_only=True):
    """The query answer (§4). Error answers carry only the codes, hence the defaults."""

    return_code: int
    return_message: str = ""
    sub_return_code: int = 0
    sub_return_message: str = ""
    is_processing: bool = False
    amount: Long = 0
    zp_trans_id: Long = 0
    server_time: Long = 0
    discount_amount: Long = 0
