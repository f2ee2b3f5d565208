"""The console's router (pages, actions, static assets) and its template engine, for service.app."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.exceptions import NotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from service.ops import actions, deliveries, pages, web


def _not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    return web.render(request, "error.html", status_code=404, title="Not found", message=exc.detail)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=web.TEMPLATES, engine=JinjaTemplateEngine)


def router() -> Router:
    return Router(
        path="/",
        route_handlers=[
            *pages.routes,
            *actions.routes,
            *deliveries.routes,
            create_static_files_router(path="/ops/static", directories=[web.STATIC], include_in_schema=False),
        ],
        exception_handlers={
            web.SignInRequiredError: web.to_login,
            web.ForbiddenError: web.forbidden,
            NotFoundException: _not_found,
        },
        include_in_schema=False,
    )
