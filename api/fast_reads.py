"""The two hottest queries, GET /v1/profiles/default and GET /v1/profiles, in
their most common form, answered without FastAPI's routing and dependency
solving.

Profiled under load, a query spent more of the API process's CPU in FastAPI's
route matching and in solving its ten dependencies (headers, token, position,
account) than in its query and its JSON. Here, an owner's token found in the
token cache, with no query string and no X-Min-Position, goes straight to the
same functions the routes call (api/routers/profiles.py `default_profile`,
`profile_page`); the middlewares around this one (request id, metrics, access
log, CORS) see the request as they would have. Anything else, and anything
that does not answer 200 here (a problem, a database error), goes to the app
unchanged, which answers as it always did."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi.routing import APIRoute

from api.routers.profiles import default_profile, profile_page, router
from infrastructure.accounts import Accounts, Principal

DEFAULT, LIST = "/v1/profiles/default", "/v1/profiles"
# Headers that change a query's answer or its wait: left to the app.
_DELEGATED = (b"x-min-position",)


class FastReads:
    def __init__(self, app: Any, fastapi_app: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app  # for its state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or (path != DEFAULT and path != LIST)
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value
            elif name in _DELEGATED:
                await self.app(scope, receive, send)
                return
        if token is None:  # the app answers 401
            await self.app(scope, receive, send)
            return
        state = self.fastapi_app.state
        principal = cached_owner(state.container.accounts, token)
        if principal is None:
            await self.app(scope, receive, send)
            return
        try:
            if path == DEFAULT:
                response = await default_profile(state.async_queries, principal.account_id)
            else:
                response = await profile_page(state.async_queries, principal.account_id)
        except Exception:
            # A problem (no default) or a database error: the app answers it, as always.
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["account_id"] = principal.account_id  # for the access log
        scope["route"] = route_of("GET", path)
        await response(scope, receive, send)


def cached_owner(accounts: Accounts, token: bytes) -> Principal | None:
    """The principal of an owner's bearer token in the token cache; None otherwise."""
    scheme, _, secret = token.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    principal = accounts.cached(secret.strip())
    return principal if principal is not None and principal.role == "owner" else None


@cache  # a handful of (method, path); the routes were searched on every request
def route_of(method: str, path: str) -> APIRoute:
    """The route the app matches for a request without path parameters: the
    metrics label a request by its template and count a command under its
    route's name, as for the app's own requests."""
    return next(
        r for r in router.routes if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
    )
