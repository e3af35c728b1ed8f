"""The hello-world baseline: FastAPI under the service's server stack.

Same stack as `racer-profiles serve`: uvicorn (uvicorn[standard]: uvloop,
httptools), one worker, no access log, a sync endpoint run in the thread pool
limited to API_THREADS (default 16), as api/app.py does.

    python benchmarks/hello_app.py --port 8001 [--workers N]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

THREADS = int(os.environ.get("API_THREADS", "16"))


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
    yield


app = FastAPI(title="hello", lifespan=lifespan)


@app.get("/hello")
def hello() -> JSONResponse:
    return JSONResponse({"hello": "world"})


@app.get("/hello-async")
async def hello_async() -> JSONResponse:
    # The same on the event loop, as the service's hot queries run (B1a).
    return JSONResponse({"hello": "world"})


@app.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    target = "hello_app:app" if args.workers > 1 else app
    uvicorn.run(
        target, host=args.host, port=args.port, workers=args.workers, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
