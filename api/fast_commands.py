"""The two hottest commands, POST /v1/profiles and PUT /v1/profiles/default, in
their most common form, run without FastAPI's routing and dependency solving.

Profiled in-process, a create spent a third of the event loop's CPU solving
its dependencies (token, owner, container, cause, X-Reason) and another part
matching its route, as much as the loop spent on everything else. Here, an
owner's token found in the token cache, a JSON body that validates, and no
query string, Idempotency-Key, X-Reason or If-Match go straight to the route's
own function (api/routers/profiles.py `create_profile`, `set_default`) with
the dependencies it would have been given; the middlewares around this one
(request id, metrics, access log, CORS, body limits) see the request as they
would have. A command that fails answers the problem document the app's
handlers would give (api/problems.py `exception_response`); anything else,
and any body that does not validate, goes to the app unchanged (with the body
read here handed on), which answers as it always did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from api.fast_reads import cached_owner, route_of
from api.problems import UNAVAILABLE, Problem, exception_response
from api.routers.profiles import create_profile, set_default
from api.schemas import DefaultRequest, ProfileCreate
from domain.errors import DomainError
from domain.service import Cause
from infrastructure.group_commit import MAX_GROUP
from infrastructure.settings import Settings

# (method, path) -> the route's function, its body's model, its other dependencies' values
# when the headers left to the app are absent.
_COMMANDS: dict[tuple[str, str], tuple[Callable[..., Any], type[BaseModel], dict[str, Any]]] = {
    ("POST", "/v1/profiles"): (create_profile, ProfileCreate, {}),
    ("PUT", "/v1/profiles/default"): (set_default, DefaultRequest, {"if_match": None}),
}
# Headers that change what a command does or how it answers: left to the app.
_DELEGATED = (b"idempotency-key", b"x-reason", b"if-match", b"x-min-position")
# The failures the app's handlers answer without re-raising (api/problems.py install).
_EXPECTED = (Problem, DomainError, *UNAVAILABLE)


class FastCommands:
    def __init__(self, app: Any, fastapi_app: Any, threads: int) -> None:
        self.app = app
        self.fastapi_app = fastapi_app  # for its state
        # The commands' own threads: loop.run_in_executor hands a command over with
        # a future and a callback, where anyio's run_sync (Starlette's
        # run_in_threadpool) also makes a cancel scope, looks up the running task
        # and library and takes a capacity token: profiled under POST load, that
        # machinery was a tenth of the API process's GIL time.
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="command")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        command = _COMMANDS.get((scope.get("method", ""), scope.get("path", "")))
        if scope["type"] != "http" or command is None or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        token = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value
            elif name == b"content-type":
                content_type = value
            elif name in _DELEGATED:
                await self.app(scope, receive, send)
                return
        principal = None if token is None else cached_owner(self.fastapi_app.state.container.accounts, token)
        if principal is None or content_type != b"application/json":
            await self.app(scope, receive, send)
            return
        raw, receive = await _read_body(receive)
        route_function, model, more = command
        try:
            # As FastAPI reads a JSON body: json.loads, then the model in Python mode.
            body = model.model_validate(json.loads(raw))
        except (ValueError, ValidationError, RecursionError):
            # Malformed, too deep or invalid: the app answers the 422 naming the field.
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["account_id"] = principal.account_id  # for the access log
        scope["route"] = route_of(scope["method"], scope["path"])
        request = Request(scope, receive)
        container = self.fastapi_app.state.container
        cause = Cause(actor=principal.account_id, request_id=request.state.request_id)
        try:
            response = await asyncio.get_running_loop().run_in_executor(
                self.executor,
                lambda: route_function(
                    request=request, body=body, owner=principal, container=container, cause=cause, **more
                ),
            )
        except _EXPECTED as exc:
            response = exception_response(exc, request)
        await response(scope, receive, send)


def command_threads(settings: Settings) -> int:
    """With a group commit a command's thread waits for the group's writer and
    needs no pooled connection (its answer's rows come back with the commit):
    as many threads as a group holds can wait together. Without one, each
    thread runs its command on a pooled connection: as many as API_THREADS."""
    return max(MAX_GROUP, settings.api_threads) if settings.group_commit else settings.api_threads


async def _read_body(receive: Any) -> tuple[bytes, Any]:
    """The request's body, and a receive that gives it again (for the app)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away: the app sees the same.
            return b"", _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    return raw, _replay([{"type": "http.request", "body": raw, "more_body": False}], receive)


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    async def replayed() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        message: dict[str, Any] = await receive()
        return message

    return replayed
