"""One typed settings object, read from PAYRECON_* environment variables (DESIGN.md §7).

A wrong or missing value fails at start with one line naming the variable, never a traceback.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from service.client_address import parse_networks

PREFIX = "PAYRECON_"
log = logging.getLogger(__name__)

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    # None → start the embedded server (service.embedded); a URL → use that server, start nothing
    database_url: str | None = None
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: Port = 8000
    # `payrecon serve` processes sharing the port; 0 = one per CPU the process may run on
    workers: Annotated[int, msgspec.Meta(ge=0)] = 0
    gateways: str | None = None  # path of the TOML file of gateway accounts
    data_dir: str = ".payrecon"  # embedded servers' data, relative to the working directory
    db_pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    db_pool_max: Positive = 10
    # seconds a process trusts an API key it verified (service.apikeys.KeyCache): a revoked key
    # stops working everywhere within this; 0 = look every key up on every request
    apikey_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    webhook_max_body: Positive = 64 * 1024  # bytes; gateways send a few KB
    webhook_body_timeout: Seconds = 10.0  # a body not fully read by then is answered 408 (slow or trickling client)
    # reverse proxies whose X-Forwarded-For / Forwarded we believe (comma-separated addresses and CIDRs);
    # empty: the TCP peer is the client (service/client_address.py)
    trusted_proxies: str = ""
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"  # the one header our proxy writes
    # refused deliveries stored in full per (gateway, reason, source): a token bucket (service/refusals.py)
    refusal_sample_rate: Seconds = 1.0  # rows per second, per key
    refusal_sample_burst: Positive = 20  # rows at once, per key
    refusal_sample_total: Seconds = 20.0  # rows per second over all keys
    refusal_tally_every: Seconds = 60.0  # seconds between aggregate rows of what was only counted
    # `payrecon serve` (uvicorn) limits against slow and abusive clients; see the README's production notes
    keep_alive: Positive = 5  # seconds an idle keep-alive connection is held open
    max_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 1000  # connections + requests per process; then 503; 0: none
    max_header_bytes: Positive = 16 * 1024  # request line + headers; larger: 431 before any work (header_limit.py)
    reconcile_every: Seconds = 300.0
    reconcile_grace: Seconds = 120.0  # an order younger than this is left to its webhook
    reconcile_horizon: Seconds = 7 * 24 * 3600.0  # older open orders are not queried any more
    # seconds between audit runs (every order created inside the horizon, paid ones too); 0 = none
    reconcile_audit_every: Annotated[float, msgspec.Meta(ge=0)] = 24 * 3600.0
    reconcile_batch: Positive = 50
    # A run participant beats 3 times per period; one silent for a whole period is gone: its leases
    # are released and a run it led is taken over by a live worker (reconciler.participants).
    run_heartbeat: Seconds = 10.0
    worker_concurrency: Positive = 10
    queue_name: str = "payrecon:queue"  # the arq queue shared by the API and the worker
    # outbound webhooks to the shop: seconds between delivery sweeps (a cron period), and a factor on
    # the retry schedule and circuit cool-downs (1 = about three days of retries; tests shrink it)
    webhook_sweep_every: Seconds = 5.0
    webhook_retry_scale: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from PAYRECON_* variables (unrelated variables are ignored) plus overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {
        key.removeprefix(PREFIX): value for key, value in env.items() if key.startswith(PREFIX) and value != ""
    }
    raw.update({key.upper(): value for key, value in overrides.items()})
    known = {field.encode_name for field in msgspec.structs.fields(Settings)}
    for name in sorted(k for k in raw if k not in known and not k.startswith("TEST_")):
        _unknown(name, known)
    raw = {k: v for k, v in raw.items() if k in known}
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc, raw)) from None
    try:
        parse_networks(settings.trusted_proxies, setting=f"{PREFIX}TRUSTED_PROXIES")  # fail at start, naming it
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return settings


def _unknown(name: str, known: set[str]) -> None:
    """A PAYRECON_* variable that is no setting: a typo of one stops; anything else is only named.

    `PAYRECON_URL` may well be a client's own variable, so it must not stop the service; but
    `PAYRECON_DATABSE_URL` silently ignored would run against the embedded database instead.
    """
    near = difflib.get_close_matches(name, known, n=1, cutoff=_TYPO)
    if near:
        raise SettingsError(f"{PREFIX}{name}: unknown setting; did you mean {PREFIX}{near[0]}?")
    closest = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    hint = f" (the closest setting is {PREFIX}{closest[0]})" if closest else ""
    log.warning("%s%s is not a payrecon setting and is ignored%s", PREFIX, name, hint)


# difflib's ratio above which an unknown name is taken for a misspelt setting: one or two letters
# dropped, doubled or swapped in a name of 8+ letters (DATABSE_URL → DATABASE_URL is 0.96; URL →
# REDIS_URL is 0.5).
_TYPO = 0.85


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, object]) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.PORT`": lead with the variable's name.
    message = str(exc)
    text, _, path = message.rpartition(" - at `$.")
    if not path:
        return f"invalid settings: {message}"
    name = path.rstrip("`").split(".")[0].split("[")[0]
    shown = "" if name.endswith("_URL") else f" (got {raw.get(name)!r})"  # URLs may hold passwords
    return f"{PREFIX}{name}: {text}{shown}"
