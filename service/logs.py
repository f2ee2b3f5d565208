"""Log lines: plain text for people, or one JSON object per line (`PAYRECON_LOG_JSON=1`) for machines.

Every line carries the context of the work it belongs to — `request_id`, `gateway`, `account`,
`order_id`, `event_id`, `outcome` — bound with `bound(...)` (a context variable, so concurrent
requests and jobs never mix their fields) and copied onto the record by `ContextFilter` in the
emitting thread (litestar's queue handler formats in another thread, where the context is gone).

Secrets never reach a line: nothing logs a payload, a header or a key, and as a second line of
defence `redact` masks what looks like an API key, a webhook secret or a card number in any
message, whoever wrote it (a gateway's error text may quote a body).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The fields a line may carry besides its message, in the order they are written.
FIELDS = ("request_id", "gateway", "account", "order_id", "event_id", "outcome")

_context: ContextVar[dict[str, Any]] = ContextVar("payrecon_log_context", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` (None ones skipped) to every line logged inside the block, in this task."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` for the rest of the current task (a request handler's own task)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def current() -> dict[str, Any]:
    return dict(_context.get())


# What must never be written, whatever a message quotes: our API keys (`prk_<8 hex>_<secret>`),
# Stripe secrets and keys, bearer tokens, and card numbers (13–19 digits, spaces or dashes
# allowed, passing the Luhn check so order ids and amounts are left alone).
_SECRETS = re.compile(
    r"prk_[0-9a-f]{8}_[A-Za-z0-9_\-]+"
    r"|\b(?:whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9]+"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]+"
)
_CARD = re.compile(r"(?<![\d])(?:\d[ \-]?){12,18}\d(?![\d])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"[card ****{digits[-4:]}]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def redact(text: str) -> str:
    """`text` with keys, secrets and card numbers masked."""
    return _CARD.sub(_mask_card, _SECRETS.sub("[redacted]", text))


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record and redacts its message (runs in the emitting thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the context fields that are set appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, None) is not None)
        return f"{text} [{extra}]" if extra else text


def handler(json_lines: bool, stream: Any = None) -> logging.Handler:
    """A stderr handler (or `stream`) with the context filter and the chosen format."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(ContextFilter())
    out.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    return out


def configure(level: str, json_lines: bool) -> None:
    """Route every logger (ours, litestar's, uvicorn's, arq's) through one handler on the root logger."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(json_lines))
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "litestar"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    # The access log line holds the query string (a VNPay IPN's signed fields): only ours are written.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def litestar_config(settings: Any, **options: Any) -> Any:
    """litestar's LoggingConfig with our format and context filter on its handlers (JSON when settings say)."""
    import copy

    from litestar.logging import LoggingConfig
    from litestar.logging.config import default_handlers

    formatter = "service.logs.JsonFormatter" if settings.log_json else "service.logs.TextFormatter"
    handlers = copy.deepcopy(default_handlers)
    for entry in handlers.values():
        entry["filters"] = ["context"]
    return LoggingConfig(
        formatters={"standard": {"()": formatter}},
        filters={"context": {"()": "service.logs.ContextFilter"}},
        handlers=handlers,
        root={"level": settings.log_level.upper(), "handlers": ["queue_listener"]},
        **options,
    )


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's `X-Request-ID` when well formed), logged and echoed back."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)
