"""Structured logs: one JSON object per line, to stderr and ``<home>/node/node.log``.

Log shippers (Loki, Vector, journald) parse JSON lines without a custom grammar, and
``jq`` answers questions like "which requests took over a second". Extra fields
given as ``log.info("msg", extra={"fields": {...}})`` are merged into the object.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

LOGGER_NAME = "proofmesh.node"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(log_file: Path | None, *, level: int = logging.INFO, stderr: bool = True) -> logging.Logger:
    """Send the node's (and uvicorn's) logs as JSON lines to ``log_file`` and stderr."""
    fmt = JsonFormatter()
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(fmt)
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = False
    # The node logs each request itself (with its latency); uvicorn's access log
    # would duplicate it in a second, unstructured format.
    logging.getLogger("uvicorn.access").disabled = True
    return logging.getLogger(LOGGER_NAME)


def log_event(log: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    log.log(level, msg, extra={"fields": fields})
