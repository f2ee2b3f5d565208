"""The reconciler: an arq worker that repairs what lost webhooks left wrong (DESIGN.md §6).

It imports `service` (ledger, runs) and `providers` (adapters); nothing imports it but its
entry points (`payrecon worker|reconcile|report|run`).
"""
