"""The access log's line, queued off the request path (infrastructure/logs.py
log_request), is the line the logging module made before: same fields, same
values, same time format. Run in a subprocess: configure() sets the process's
logging up for good."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import datetime

from infrastructure import logs

SCRIPT = """
import logging, sys
from infrastructure import logs
logs.configure()
fields = {"request_id": "r1", "account_id": None, "method": "GET", "route": "/v1/profiles",
          "status": 200, "duration_ms": 1.25}
logs.log_request(fields)
logging.getLogger(logs.ACCESS_LOGGER).info("request", extra=fields)
"""  # at exit, the listener writes what is still queued


def test_a_queued_request_line_is_the_logging_modules_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    queued, logged = (json.loads(line) for line in done.stderr.splitlines())
    assert queued.keys() == logged.keys()
    assert {k: v for k, v in queued.items() if k != "time"} == {
        k: v for k, v in logged.items() if k != "time"
    }
    assert queued["message"] == "request" and queued["logger"] == "racer_profiles.access"
    assert queued["status"] == 200 and queued["account_id"] is None
    made, then = (datetime.strptime(x["time"], "%Y-%m-%d %H:%M:%S,%f") for x in (queued, logged))
    assert 0 <= (then - made).total_seconds() < 5


BATCH_SCRIPT = """
import sys


class Counting:
    # stderr that counts its writes
    def __init__(self, stream):
        self.stream, self.writes = stream, 0

    def write(self, text):
        self.writes += 1
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


import atexit
sys.stderr = counting = Counting(sys.stderr)
atexit.register(lambda: print(counting.writes))  # after the listener's stop (registered later)
from infrastructure import logs
logs.configure()
for i in range(100):
    logs.log_request({"request_id": str(i), "status": 200})
"""


def test_queued_lines_are_written_together_in_order() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BATCH_SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["request_id"] for line in lines] == [str(i) for i in range(100)]
    # One write per line woke the listener thread, and took the event loop's GIL, per request.
    assert int(done.stdout) < 10


def test_the_json_lines_time_is_the_logging_modules() -> None:
    formatter, plain = logs._JsonFormatter("%(asctime)s %(message)s"), logging.Formatter()
    now = time.time()
    # Within a second, across seconds, backwards: the cached second's text is never stale.
    for created in (now, now + 0.0004, now + 0.9991, now + 1.0002, now - 3.5, now + 86_400.25, now):
        record = logging.LogRecord("x", logging.INFO, __file__, 0, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert formatter.formatTime(record) == plain.formatTime(record)
