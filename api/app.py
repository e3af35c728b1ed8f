"""The FastAPI application, built around a container the caller owns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.to_thread
from fastapi import FastAPI

from api import openapi, problems
from api.fast_commands import FastCommands, command_threads
from api.fast_reads import FastReads
from api.limits import BodyLimitsMiddleware
from api.metrics import Metrics, MetricsMiddleware, StateCollector
from api.quotas import ForegroundRequests, Quotas
from api.request_id import RequestIdMiddleware
from api.routers import accounts, admin, audit, health, profiles, stream, tokens, ui
from infrastructure.accounts import Accounts
from infrastructure.async_queries import async_queries_for
from infrastructure.container import Container
from infrastructure.settings import Settings

log = logging.getLogger(__name__)


def create_app(container: Container) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The library blocks, so endpoints are sync and run in threads; one
        # pooled connection per thread keeps requests from queueing on the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = container.settings.api_threads
        await anyio.to_thread.run_sync(container.open_pools)
        # The hot queries run on this loop, with a pool of its own (api/routers/profiles.py).
        app.state.async_queries = async_queries_for(container.settings, container.queries)
        await app.state.async_queries.open()
        app.state.ops_limiter = anyio.CapacityLimiter(health.OPS_THREADS)
        container.feed.start()
        flusher = asyncio.create_task(
            _flush_last_used(
                container.accounts, container.settings.token_last_used_flush_seconds, app.state.ops_limiter
            )
        )
        try:
            with stream.streams_end_on_signals(container.feed):
                yield
        finally:
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
            container.feed.stop()
            await app.state.async_queries.close()
            with suppress(Exception):  # the database may be gone at shutdown
                await anyio.to_thread.run_sync(container.accounts.flush_last_used)
            # Said here, not by uvicorn: its INFO lines are silenced (infrastructure/logs.py).
            log.info("application shutdown complete: requests answered, pools closed")

    app = FastAPI(
        # FastAPI's native OpenTelemetry looks up the global providers on every
        # request (a twelfth of a query's CPU on the event loop); this service
        # reports through its own metrics and access log (api/metrics.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="racer-profiles",
        version="1.0.0",
        description="Racer profiles of a racing dashboard, event-sourced, one default per account.",
        lifespan=lifespan,
        # Operation ids are the endpoint functions' names: stable for generated clients.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.container = container
    app.state.metrics = Metrics(
        StateCollector(
            container.app,
            container.view,
            container.audit.log,
            container.datastore,
            container.reader,
            container.feed,
            runner=lambda: container.runner,
        )
    )
    app.state.quotas = Quotas(container.settings)
    settings = container.settings
    # Innermost of ours: the fast paths of the hot queries and commands, inside the
    # request id, metrics and access log.
    app.add_middleware(FastReads, fastapi_app=app)
    app.add_middleware(FastCommands, fastapi_app=app, threads=command_threads(container.settings))
    app.add_middleware(BodyLimitsMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            problems.ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "X-Request-ID",
                "X-Reason",
                "X-Min-Position",
                "Last-Event-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "X-Position",
                "X-Request-ID",
                "Retry-After",
                "Idempotent-Replayed",
            ],
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    # Outermost: a request counts for the streams' backlog share from its first step.
    app.add_middleware(ForegroundRequests, share=app.state.quotas.backlog)
    problems.install(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


# In the order of the OpenAPI document's paths. Routing does not depend on it (api/path_params.py).
ROUTERS = (
    health.router,
    ui.router,
    stream.router,
    audit.history_router,
    profiles.router,
    audit.router,
    accounts.router,
    tokens.router,
    admin.router,
)


def offline_document() -> dict[str, Any]:
    """The OpenAPI document of an app built around a stand-in container: no database is touched."""
    return offline_app().openapi()


def offline_app() -> FastAPI:
    """The app around a stand-in container, for what needs no database (its document, its routes)."""
    # Defaults only (no environment): the document does not depend on the machine. The
    # parts are what create_app hands on (to the metrics) without reading them.
    parts = dict.fromkeys(("app", "view", "datastore", "reader", "feed", "runner"))
    stand_in = SimpleNamespace(settings=Settings.model_construct(), audit=SimpleNamespace(log=None), **parts)
    return create_app(cast(Container, stand_in))


async def _flush_last_used(accounts: Accounts, every: float, limiter: anyio.CapacityLimiter) -> None:
    """Writes tokens' `last used` times every TOKEN_LAST_USED_FLUSH_SECONDS."""
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(accounts.flush_last_used, limiter=limiter)
        except Exception as e:  # the database is away: kept for the next flush
            log.warning("could not write tokens' last-used times: %s", e)
