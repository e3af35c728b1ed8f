"""Prometheus metrics: requests, commands, the projection and the pools.

Each app has its own registry, so several apps in one process (tests) do not
collide; /metrics serves it in the text exposition format."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.responses import CommandResponse
from domain.errors import ConcurrencyConflict, DomainError
from domain.service import ProfilesService
from infrastructure.change_feed import ChangeFeed
from infrastructure.event_log import EventLog
from infrastructure.logs import log_request
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.runner import ProjectionRunner

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, state: Collector) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.commands = Counter(
            "commands",
            "Commands by type and outcome (ok, conflict_retried, conflict_failed, rejected)",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.registry.register(state)

        # labels() validates and locks on every call; the children are few
        # (method x route x status), so each is looked up once.
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True, eq=False)  # eq=False: registered by identity, as any collector
class StateCollector(Collector):
    """Read at scrape time: projection position and lag, pool usage, open streams.
    Nothing is read when it is made (the offline OpenAPI document makes one of Nones)."""

    app: ProfilesService  # the event log's head and its pool
    view: PostgresProfilesView  # the applied position
    log: EventLog  # the age of the next event to apply
    datastore: PostgresDatastore  # the read and write pool
    reader: PostgresDatastore  # the replica's pool when it is another
    feed: ChangeFeed  # the open streams
    # This process's runner, if it has one: started after the app may be made.
    runner: Callable[[], ProjectionRunner | None]

    def collect(self) -> Iterator[Any]:
        head: int | None
        position: int | None
        try:
            head = self.app.recorder.max_notification_id() or 0
            position = self.view.position(self.app.name)
        except Exception:  # the database is out of reach: report no projection figures
            head = position = None
        if head is not None and position is not None:
            yield _gauge("projection_position", "Last event position applied to the read table", position)
            yield _gauge("projection_head_position", "Last event position in the event store", head)
            yield _gauge("projection_lag_events", "Events not yet applied to the read table", head - position)
            lag_seconds = self.log.age_of_next(position) if head > position else 0.0
            yield _gauge("projection_lag_seconds", "Age of the oldest event not yet applied", lag_seconds)
        runner = self.runner()
        if runner is not None:
            yield _gauge("projection_events_applied", "Events this process's runner applied", runner.applied)
            yield _gauge(
                "projection_running",
                "1 when this process's runner leads and runs",
                1.0 if runner.status().role == "leader" else 0.0,
            )
        pools = {"events": self.app.recorder.datastore.pool, "read": self.datastore.pool}  # type: ignore[attr-defined]
        if self.reader is not self.datastore:
            pools["replica"] = self.reader.pool
        for name, stat in (
            ("pool_size", "pool_size"),
            ("pool_available", "pool_available"),
            ("pool_waiting", "requests_waiting"),
        ):
            family = GaugeMetricFamily(f"db_{name}", f"Connection pool {stat}", labels=["pool"])
            for pool_name, pool in pools.items():
                family.add_metric([pool_name], pool.get_stats().get(stat, 0))
            yield family
        yield _gauge("sse_streams_open", "Server-sent event streams open", self.feed.subscriber_count())


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class MetricsMiddleware:
    """Times every request, labelled by its route template (not the raw path)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            duration = time.perf_counter() - start
            self.metrics.observe(scope["method"], route, status, duration)
            state = scope.get("state", {})
            # One line per request; never the token, the body or the query string.
            log_request(
                {
                    "request_id": state.get("request_id"),
                    "account_id": state.get("account_id"),
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                }
            )


def counted(request: Any, run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wraps a command so that its outcome is counted under its endpoint's name."""
    metrics: Metrics = request.app.state.metrics
    route = request.scope.get("route")
    name = getattr(route, "name", "unknown")

    def run_counted(cause: Any) -> Any:
        try:
            response = run(cause)
        except ConcurrencyConflict:
            metrics.commands.labels(name, "conflict_failed").inc()
            raise
        except DomainError:
            metrics.commands.labels(name, "rejected").inc()
            raise
        retried = isinstance(response, CommandResponse) and response.attempts > 1
        metrics.commands.labels(name, "conflict_retried" if retried else "ok").inc()
        return response

    return run_counted
