"""Request bodies: a size limit (413) and JSON only (415), as problem details."""

from __future__ import annotations

from typing import Any

from api.problems import Problem, problem_body

MAX_BODY_BYTES = 64 * 1024


class BodyLimitsMiddleware:
    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, scope, _too_large(self.max_bytes))
            return
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = (length is not None and length not in (b"0",)) or b"transfer-encoding" in headers
        if has_body and not (media == b"application/json" or media.endswith(b"+json")):
            await self._refuse(
                send,
                scope,
                Problem.of("unsupported-media-type", "request bodies must be application/json"),
            )
            return

        # Bodies are small: read the whole body first (a chunked one has no
        # length to check up front), then hand it on unchanged.
        chunks: list[bytes] = []
        size = 0
        while True:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, scope, _too_large(self.max_bytes))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any, scope: dict[str, Any], problem: Problem) -> None:
        body = problem_body(problem, scope.get("path"))
        await send(
            {
                "type": "http.response.start",
                "status": problem.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> Problem:
    return Problem.of("content-too-large", f"request bodies are limited to {limit} bytes")
