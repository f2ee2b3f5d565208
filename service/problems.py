"""Errors → RFC 9457 problem documents: the one table of statuses, and the one shape of every error.

Every error any route answers (litestar's own validation and routing errors, 401/403 from the
API-key middleware and guards, our domain errors, an unexpected 500) is one `Problem` served as
`application/problem+json`:

    {"type": "https://payrecon.dev/problems/invalid-request", "title": "Invalid request", "status": 400,
     "detail": "currency: 'XYZ' is not an ISO 4217 currency code",
     "errors": [{"field": "currency", "message": "'XYZ' is not an ISO 4217 currency code"}]}

`type` and `title` depend only on the status (the `STATUSES` table), so a client switches on
`status` or `type`; `detail` says what happened to this request; `errors` names each offending
field (a body path such as `provider_data.vnp_create_date`, a query or path parameter) and is
empty when no field is at fault. Domain errors raise a `ProblemError` subclass; a route never
builds a problem by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.types import ExceptionHandlersMap

from providers.errors import PayreconError
from service import http_metrics
from service.db import UNAVAILABLE_ERRORS
from service.pages import CursorError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://payrecon.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    """One offending field of a request, and what is wrong with it."""

    field: str  # a body path (`provider_data.vnp_create_date`), a query or path parameter
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9457 problem document: the body of every error answer."""

    type: str  # a URI naming the kind of problem; one per status (see `title`)
    title: str  # the same for every problem of this `type`
    status: int  # the HTTP status code of the answer
    detail: str  # what went wrong with this request, for a person
    errors: list[FieldError] = []  # each offending field; empty when no field is at fault


# status → (type slug, title): the one table. A status not listed falls back to its HTTP phrase.
STATUSES: dict[int, tuple[str, str]] = {
    400: ("invalid-request", "Invalid request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    408: ("request-timeout", "Request timeout"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
    431: ("header-fields-too-large", "Request header fields too large"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}

# What each status means on any route, for the OpenAPI document.
DESCRIPTIONS: dict[int, str] = {
    400: "The request is invalid; `errors` names each offending field.",
    401: "No API key, or an unknown or revoked one (send `Authorization: Bearer <key>`).",
    403: "The API key lacks the scope this route needs.",
    404: "No such resource.",
    409: "Conflicts with what is already stored; `errors` names the differing fields.",
    413: "The request body is larger than the limit.",
    503: "The database (or, for routes that enqueue work, the job queue) is unreachable; retry later.",
}


def problem_type(status: int) -> str:
    return PROBLEM_BASE + STATUSES.get(status, ("error", ""))[0]


def problem(status: int, detail: str, errors: Iterable[FieldError] = ()) -> Problem:
    slug, title = STATUSES.get(status, ("error", HTTPStatus(status).phrase))
    return Problem(type=PROBLEM_BASE + slug, title=title, status=status, detail=detail, errors=list(errors))


class ProblemError(PayreconError):
    """A domain error with an HTTP face. Subclasses set the status.

    `field` (one offending field) or `errors` name the fields at fault; `fields` names several
    fields with the same message (the detail). Other keyword arguments are kept in `extra` for
    callers, not rendered.
    """

    status_code: int = 400

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        fields: Iterable[str] = (),
        errors: Iterable[FieldError] = (),
        **extra: object,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        named = [field] if field is not None else list(fields)
        self.errors = [*errors, *(FieldError(name, detail) for name in named)]
        self.extra = {
            **extra,
            **({"field": field} if field is not None else {}),
            **({"fields": named} if fields else {}),
        }


class InvalidRequestError(ProblemError):
    status_code = 400


class NotFoundError(ProblemError):
    status_code = 404


class ConflictError(ProblemError):
    status_code = 409


class PayloadTooLargeError(ProblemError):
    status_code = 413


class RequestTimeoutError(ProblemError):
    """The body did not arrive within PAYRECON_WEBHOOK_BODY_TIMEOUT (service/api/webhooks.py)."""

    status_code = 408


class UnavailableError(ProblemError):
    status_code = 503


def invalid(field: str, message: str) -> InvalidRequestError:
    """A 400 naming one field, its detail reading `field: message`."""
    return InvalidRequestError(f"{field}: {message}", errors=[FieldError(field, message)])


def invalid_fields(errors: list[FieldError]) -> InvalidRequestError:
    return InvalidRequestError("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def _answer(body: Problem, headers: Mapping[str, str] | None = None) -> Response[Problem]:
    return Response(body, status_code=body.status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def _from_http(exc: HTTPException) -> Problem:
    """litestar's own exceptions: validation (extra = [{key, message, source}]), routing, auth, size."""
    errors = [
        FieldError(str(item.get("key") or "body"), str(item.get("message", "")))
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    if errors:
        return problem(exc.status_code, "; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return problem(exc.status_code, exc.detail)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    http_metrics.count_unrouted(request.scope, exc.status_code)  # the router's 404/405: no route counted it
    return _answer(_from_http(exc), exc.headers)


def _on_domain(_: Request[Any, Any, Any], exc: ProblemError) -> Response[Problem]:
    return _answer(problem(exc.status_code, exc.detail, exc.errors))


def _on_cursor(_: Request[Any, Any, Any], exc: CursorError) -> Response[Problem]:
    # Every list pages with one cursor shape (service/pages.py): one answer to a cursor we did not issue.
    return _on_domain(_, invalid("cursor", str(exc)))


def _on_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # The database went away mid-request: the client may retry; it is not a bug of ours.
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return _answer(problem(503, "the database is unreachable; try again"), {"retry-after": "5"})


def _on_internal(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # Never leak internals: the log has the traceback, the client a stable shape.
    log.error("unhandled error", exc_info=exc)
    return _answer(problem(500, "see the server log"))


def exception_handlers() -> ExceptionHandlersMap:
    """The app's handlers: litestar picks the most specific class of the raised exception."""
    return {
        HTTPException: _on_http,
        ProblemError: _on_domain,
        CursorError: _on_cursor,
        # Every class service.db calls "unavailable" (InternalClientError after a terminated backend,
        # OSError, admin/crash shutdown…), so no database blip is ever a 500.
        **{error: _on_unavailable for error in UNAVAILABLE_ERRORS if issubclass(error, Exception)},
        Exception: _on_internal,
    }


# --- OpenAPI: the problem answers of a route ------------------------------------------------------

_EXAMPLES: dict[int, Problem] = {
    400: problem(
        400,
        "currency: 'XYZ' is not an ISO 4217 currency code",
        [FieldError("currency", "'XYZ' is not an ISO 4217 currency code")],
    ),
    401: problem(401, "missing API key: send Authorization: Bearer <key>"),
    403: problem(403, "API key prk_1a2b3c4d lacks scope orders:write"),
    404: problem(404, "no order ord_1001"),
    409: problem(
        409,
        "order ord_1001 is registered with a different amount",
        [FieldError("amount", "order ord_1001 is registered with a different amount")],
    ),
    413: problem(413, "Request Entity Too Large"),
    503: problem(503, "the database is unreachable; try again"),
}


def responses(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """OpenAPI responses of a keyed route: 400, 401, 403, 503 always, plus `statuses`."""
    out: dict[int, ResponseSpec] = {}
    for status in sorted({400, 401, 403, 503, *statuses}):
        example = _EXAMPLES.get(status, problem(status, "…"))
        out[status] = ResponseSpec(
            data_container=Problem,
            description=(described or {}).get(status, DESCRIPTIONS.get(status, STATUSES[status][1])),
            media_type=MEDIA_TYPE,
            examples=[Example(summary=STATUSES[status][1], value=msgspec.to_builtins(example))],
        )
    return out
