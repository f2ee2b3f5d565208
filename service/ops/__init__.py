"""The ops console at `/ops`: server-rendered pages (Jinja), a little plain JS, every asset served here.

Pages (service/ops/pages.py) need a key with `recon:read`; actions (service/ops/actions.py,
service/ops/deliveries.py) need `recon:write` and a note, and are audited (service/ops/audit.py).
The console signs in with its own session cookie (service/ops/web.py), so `/ops` is left out of
the API-key middleware (service/auth.py).
"""
