"""One JSON log format for orgbill and uvicorn; fields passed with ``extra=`` become
top-level keys. ``ts`` is ISO-8601 UTC with milliseconds and ``Z``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from orgbill.kit.context import current_request_id

# uvicorn passes `color_message` (an ANSI copy of msg) with every line: never ours to print.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def format_ts(created: float) -> str:
    # isoformat is a third of strftime's cost (one line per request); "+00:00" becomes "Z".
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": format_ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if "requestId" not in entry and (request_id := current_request_id()):
            entry["requestId"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`: its own lines (startup,
    errors) come out in orgbill's JSON format, in every worker."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in ("orgbill", *_UVICORN_LOGGERS)
        },
    }


def configure_logging(level: str, *, access_log: bool) -> None:
    # The JSON line prints no thread or process fields: not gathered for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("orgbill")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("orgbill.access").disabled = not access_log
