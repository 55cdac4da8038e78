"""Structured JSON log lines on stdout: timestamp, level, service, message, details."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

SERVICE = "llm-orchestrator"
# Not details: the record's own attributes, and the ANSI-coloured copy of the message that
# uvicorn attaches to its lines for terminals.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        details: dict[str, Any] = {
            key: value for key, value in record.__dict__.items() if key not in _RESERVED
        }
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": SERVICE,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if details:
            line["details"] = details
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
