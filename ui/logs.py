"""Log lines for people (text) or for a log collector (one JSON object per line)."""

from __future__ import annotations

import json
import logging
import sys
import time

from rag.text import printable

NOISY = ("sentence_transformers", "transformers", "faiss", "httpx", "filelock", "ray")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"}` plus the exception, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Text log lines with control characters (from file or zip-member names) escaped: one record, one
    line, and no escape sequence reaches the terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))  # the traceback after it keeps its lines


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send log records to stderr as text or JSON lines; quieten the libraries that chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
