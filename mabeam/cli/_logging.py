"""Log output of the operator and the CLI: plain text for people, JSON lines for collectors.

``configure("json")`` makes every record one JSON object with ``time``, ``level``, ``logger``,
``message`` and, where known, the Kubernetes object (``namespace``, ``kind``, ``name``), the
``session`` and the ``agent``. Those come from, in order:

1. ``extra={"session": ..., "agent": ...}`` on the logging call;
2. kopf's per-object loggers (the ``k8s_ref`` extra it adds): a Coordination's name is the
   session, an Agent's name is the agent;
3. the context set with :func:`log_context` (a contextvar, so each asyncio task keeps its own).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any, Literal

__all__ = ["JsonFormatter", "LogFormat", "configure", "log_context"]

LogFormat = Literal["json", "text"]

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "mabeam_log_context", default=None
)

#: Which object kinds name a session or an agent.
_KIND_FIELD = {"Coordination": "session", "Agent": "agent"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields (``session=``, ``agent=``, ``namespace=``) to every record logged inside."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (_CONTEXT.get() or {}).items():
            entry.setdefault(key, value)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            for key in ("namespace", "kind", "name"):
                if ref.get(key):
                    entry[key] = ref[key]
            field = _KIND_FIELD.get(str(ref.get("kind")))
            if field and ref.get("name"):
                entry[field] = ref["name"]
        for key in ("session", "agent", "namespace"):
            extra = record.__dict__.get(key)
            if extra:
                entry[key] = extra
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: LogFormat = "text", *, level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr in ``fmt`` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The HTTP client logs every request at INFO: keep that for --verbose.
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
