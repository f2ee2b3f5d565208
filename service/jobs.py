"""What the API and the worker agree on about arq jobs: names and the serializer."""

from __future__ import annotations

import msgspec

# msgpack via msgspec on both sides; enc_hook=repr lets arq store exception results (stack.md §2.6).
JOB_ENCODE = msgspec.msgpack.Encoder(enc_hook=repr).encode
JOB_DECODE = msgspec.msgpack.Decoder().decode

# The API enqueues by name; `service` never imports `reconciler` (DESIGN.md §1).
RECONCILE_JOB = "reconcile_now"

# The ops console's "check this order now": (operator_actions id, order id); the worker writes the
# result into that operator_actions row (service.ops.audit.finish).
CHECK_ORDER_JOB = "check_order_now"
