"""structlog JSON logs with personal data masked; stdlib (faust, aiokafka) routed through it."""

from __future__ import annotations

import logging
from typing import Any

import structlog

from engine.runtime.logfilter import RateLimit, add_suppressed
from engine.runtime.pii import mask_name, mask_text

__all__ = ["PII_KEYS", "configure", "get", "mask_exception", "mask_name", "mask_phone",
           "mask_pii"]

# whole values never logged; every other string has its phone and ID numbers masked
# (engine/runtime/pii.py: digits the engine logs as numbers, offsets and partitions, stay)
PII_KEYS = frozenset({"phone", "name", "citizen", "original", "description"})
mask_phone = mask_text  # the name importers used when only mobiles were masked


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: ("***" if k in PII_KEYS else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_pii(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in PII_KEYS else _mask(v)) for k, v in event.items()}


def mask_exception(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A rendered traceback quotes values (a validation error, its input): masked too."""
    if isinstance(event.get("exception"), str):
        event["exception"] = mask_text(event["exception"])
    return event


def configure(level: str = "info", repeat_interval: float = 10.0) -> logging.Handler:
    """Configure structlog and return a stdlib handler that renders JSON the same way.

    Warnings and errors repeating the same (logger, template) go out at most once per
    ``repeat_interval`` seconds, with the count of those dropped (engine/runtime/logfilter.py).
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_pii,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[add_suppressed,
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    mask_exception,
                    structlog.processors.JSONRenderer()],
    ))
    handler.addFilter(RateLimit(interval=repeat_interval))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
