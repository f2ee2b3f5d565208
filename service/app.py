"""The litestar application factory: resources in one lifespan, routes from `service.api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import swagger_ui_bundle
from arq import create_pool as create_arq_pool
from arq.connections import RedisSettings
from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from providers.gateway import Connected
from service import apikeys, auth, db, logs, migrate, refusals
from service.allowlists import Allowlists
from service.api import anomalies, health, metrics, orders, reconciliation, rejected, webhook_endpoints, webhooks
from service.client_address import ClientAddressMiddleware, parse_networks
from service.gateways import load_gateways
from service.header_limit import HeaderLimitMiddleware
from service.http_metrics import HttpMetrics
from service.input_guard import InputGuard
from service.jobs import JOB_DECODE, JOB_ENCODE
from service.ledger import GroupCommit
from service.openapi import OpenAPIJson
from service.ops import console
from service.order_reads import OrderReads
from service.problems import exception_handlers
from service.settings import Settings, load_settings

_ASSETS = "/schema/assets"

API_DESCRIPTION = """Payment-status reconciliation: orders, audit trail, anomalies, reconciliation runs, and the
shop's webhook endpoints.

Authenticate with `Authorization: Bearer <API key>` (`payrecon apikey create`). Every error is an
RFC 9457 problem document (`application/problem+json`): `type`, `title`, `status`, `detail`, and
`errors: [{field, message}]` naming each offending field."""


class SchemaBehindError(Exception):
    """The database lacks migrations this code needs."""


@asynccontextmanager
async def _resources(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("create_app needs database and Redis URLs; `payrecon serve` resolves the embedded ones")
    pool = await db.create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        async with pool.acquire() as conn:
            missing = await migrate.pending(conn)
        if missing:
            raise SchemaBehindError(
                f"database schema is behind (missing {', '.join(missing)}); run `payrecon migrate` first"
            )
        redis = await create_arq_pool(
            RedisSettings.from_dsn(settings.redis_url),
            job_serializer=JOB_ENCODE,
            job_deserializer=JOB_DECODE,
            default_queue_name=settings.queue_name,
        )
        app.state.pool = pool
        app.state.order_reads = OrderReads(pool)
        app.state.group_commit = GroupCommit(pool)  # webhooks' events, committed together
        app.state.redis = redis
        try:
            yield
        finally:
            await redis.aclose()
    finally:
        await pool.close()


def create_app(settings: Settings | None = None, *, gateways: dict[str, Connected] | None = None) -> Litestar:
    """Build the app. Tests pass settings (and adapters) explicitly instead of touching the environment."""
    settings = settings or load_settings()
    if gateways is None:
        gateways = load_gateways(settings.gateways)
    return Litestar(
        route_handlers=[
            *health.routes,
            *orders.routes,
            *anomalies.routes,
            *webhooks.routes,
            *reconciliation.routes,
            *webhook_endpoints.routes,
            *metrics.routes,
            create_static_files_router(
                path=_ASSETS, directories=[swagger_ui_bundle.swagger_ui_path], include_in_schema=False
            ),
            *rejected.routes,
            console.router(),
        ],
        lifespan=[_resources, refusals.tallying],
        state=State(
            {
                "settings": settings,
                "gateways": gateways,
                "apikeys": apikeys.KeyCache(settings.apikey_cache_seconds),
                "allowlists": Allowlists(gateways),
                "refusals": refusals.sampler_for(settings),
            }
        ),
        middleware=[
            # first: everything after it (metrics, auth, webhooks, logs) sees the client, not the proxy
            DefineMiddleware(
                ClientAddressMiddleware,
                trusted=parse_networks(settings.trusted_proxies, setting="PAYRECON_TRUSTED_PROXIES"),
                header=settings.proxy_header,
            ),
            DefineMiddleware(HeaderLimitMiddleware, limit=settings.max_header_bytes),
            logs.RequestIdMiddleware,
            HttpMetrics,
            *auth.middleware(),
            InputGuard(),
        ],
        exception_handlers=exception_handlers(),
        openapi_config=OpenAPIConfig(
            title="payrecon",
            version="0.1.0",
            description=API_DESCRIPTION,
            path="/schema",
            use_handler_docstrings=True,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="API key")}
            ),
            # The UI's assets are served from this process (swagger-ui-bundle), never from a CDN.
            render_plugins=[
                OpenAPIJson(),
                SwaggerRenderPlugin(
                    path=["/", "/swagger"],
                    js_url=f"{_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{_ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{_ASSETS}/favicon-32x32.png'>",
                ),
            ],
        ),
        logging_config=logs.litestar_config(
            settings,
            log_exceptions="always",
            disable_stack_trace={400, 401, 403, 404, 405, 409, 413, 415, 422},
        ),
        request_max_body_size=1024 * 1024,
        template_config=console.template_config(),
    )


def settings_with(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)
