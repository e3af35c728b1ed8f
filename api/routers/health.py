"""Liveness, readiness and metrics: a bulkhead of their own.

/healthz is answered on the event loop and needs no thread; /readyz and
/metrics touch the database in OPS_THREADS threads of their own (not the
request threads), so none of them queues behind commands or audit reads."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.deps import ContainerDep
from api.metrics import CONTENT_TYPE
from api.schemas import Health, Readiness
from infrastructure.container import Container
from infrastructure.runner import leader_present

OPS_THREADS = 2  # /readyz and /metrics: a probe and a scrape at once

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness",
    description="200 while the process serves requests; touches nothing else.",
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    description=(
        "200 when the database answers and the projection runner has not stopped on an error, with"
        " the read table's position and lag; 503 with the same body otherwise."
    ),
    responses={503: {"model": Readiness, "description": "Not ready; the body says why."}},
)
async def readyz(request: Request, container: ContainerDep) -> JSONResponse:
    """Ready when the database answers and the projection is not stopped;
    reports the projection's position and its lag behind the event log."""
    return await anyio.to_thread.run_sync(_readiness, container, limiter=request.app.state.ops_limiter)


def _readiness(container: Container) -> JSONResponse:
    body: dict[str, object] = {}
    ready = True
    try:
        head = container.app.recorder.max_notification_id() or 0  # 3 attempts at most
        position = container.view.position(container.app.name)
        body.update(database="ok", head=head, position=position, lag=head - position)
    except Exception as e:  # any failure to reach the database means not ready
        ready = False
        body["database"] = f"unavailable: {type(e).__name__}"
    if "position" in body:
        stop = container.projection_status.stop(int(body["position"]))  # type: ignore[call-overload]
        if stop is not None:
            ready = False
            body["projection_error"] = stop.error
            body["projection_failed_position"] = stop.position
    runner = container.runner
    if runner is not None:
        status = runner.status()
        body["projection"] = status.role
        if status.role == "failed":
            ready = False
            body["projection_error"] = status.error
            body["projection_failed_position"] = status.failed_position
    elif "position" in body:
        # The projector runs in another process (serve's child, or `project`):
        # its leader lock shows whether one is running.
        try:
            body["projection"] = "leader" if leader_present(container.datastore) else "no leader"
        except Exception as e:  # the database went away since the lines above
            ready = False
            body["database"] = f"unavailable: {type(e).__name__}"
            body["projection"] = "unknown"
    else:
        body["projection"] = "unknown"
    body["status"] = "ready" if ready else "not ready"
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    description="The Prometheus text exposition format (version 0.0.4).",
    responses={
        200: {
            "description": "Metrics in the Prometheus text format.",
            "content": {
                "text/plain; version=0.0.4; charset=utf-8": {
                    "schema": {"type": "string"},
                    "example": "# HELP http_request_duration_seconds HTTP request latency\n",
                }
            },
        }
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    text = await anyio.to_thread.run_sync(
        request.app.state.metrics.exposition, limiter=request.app.state.ops_limiter
    )
    return Response(text, media_type=CONTENT_TYPE)
