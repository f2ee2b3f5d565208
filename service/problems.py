"""Errors → RFC 9457 problem details: the one table of HTTP statuses for domain errors."""

from __future__ import annotations

import logging

from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin

from providers.errors import PayreconError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://payrecon.dev/problems/"


class ProblemError(PayreconError):
    """A domain error with an HTTP face. Subclasses set the status, slug and title."""

    status_code: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(ProblemError):
    status_code, slug, title = 404, "not-found", "Not found"


class ConflictError(ProblemError):
    status_code, slug, title = 409, "conflict", "Conflict"


class InvalidRequestError(ProblemError):
    status_code, slug, title = 400, "invalid-request", "Invalid request"


def _domain(exc: ProblemError) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=exc.status_code,
        type_=PROBLEM_BASE + exc.slug,
        title=exc.title,
        detail=exc.detail,
        extra=exc.extra or None,
    )


def _internal(exc: Exception) -> ProblemDetailsException:
    # Never leak internals: the log has the traceback, the client a stable shape.
    log.exception("unhandled error", exc_info=exc)
    return ProblemDetailsException(
        status_code=500, type_=PROBLEM_BASE + "internal", title="Internal error", detail="see the server log"
    )


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={ProblemError: _domain, Exception: _internal},
        )
    )
