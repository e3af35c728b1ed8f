"""Idempotency-Key on commands: a retry with the same key and body gets the
first response back and writes nothing; the same key with another body: 422;
while the first is still running: 409."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from api.problems import Problem, exception_response, invalid
from domain.service import Cause
from infrastructure.idempotency import IdempotencyStore, KeyAlreadyCommitted, fingerprint

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEPT_HEADERS = ("etag", "location", "x-position", "content-type")


def _invalid_key(reason: str) -> Problem:
    return invalid("Idempotency-Key", reason)


def _replayed(status: int, headers: dict[str, str], body: bytes) -> Response:
    return Response(body, status_code=status, headers={**headers, "Idempotent-Replayed": "true"})


def _in_flight(retry_after: bool = True) -> Problem:
    return Problem.of(
        "idempotency-in-flight",
        "a request with this Idempotency-Key is still being processed",
        {"Retry-After": "1"} if retry_after else None,
    )


def _lost_the_key(
    store: IdempotencyStore, account: str, key: str, rebuild: Callable[[str], Response]
) -> Response:
    """This request's transaction rolled back because another request with the
    key committed first: answer as a replay of that one."""
    stored = store.get(account, key)
    if stored is not None and stored.state == "done" and stored.body is not None and stored.status:
        return _replayed(stored.status, stored.headers, stored.body)
    if stored is not None and stored.state == "committed" and stored.profile_id:
        # Committed, its owner still replying (it stores the response itself).
        response = rebuild(stored.profile_id)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    raise _in_flight()


def idempotent(
    request: Request,
    store: IdempotencyStore,
    cause: Cause,
    body: BaseModel | None,
    command: Callable[[Cause], Response],
    rebuild: Callable[[str], Response],
) -> Response:
    """Runs command(cause) at most once per (account, key). rebuild(profile_id)
    answers for a key whose first request committed but died before replying."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return command(cause)
    if not _KEY.match(key):
        raise _invalid_key("must be 1-255 visible ASCII characters")
    account = cause.actor
    payload = body.model_dump_json(exclude_unset=True) if body is not None else ""
    fp = fingerprint(request.method, str(request.url.path), payload.encode())
    if not store.reserve(account, key, fp):
        stored = store.get(account, key)
        if stored is None:  # expired and removed in between: one more try
            if not store.reserve(account, key, fp):
                raise _in_flight(retry_after=False)
        elif stored.fingerprint != fp:
            raise _invalid_key("was already used with a different request")
        elif stored.state == "done" and stored.body is not None and stored.status is not None:
            return _replayed(stored.status, stored.headers, stored.body)
        elif stored.state == "committed" and stored.profile_id and stored.lease_expired:
            # The first request stored its events but died before replying.
            return _finish(store, account, key, rebuild(stored.profile_id))
        elif not (stored.lease_expired and store.take_over(account, key)):
            raise _in_flight()
    try:
        response = command(replace(cause, idempotency=(account, key)))
    except KeyAlreadyCommitted:
        return _lost_the_key(store, account, key, rebuild)
    except Exception as exc:
        response = exception_response(exc, request)
        if response.status_code >= 500:
            stored = store.get(account, key)
            if stored is not None and stored.state == "in_flight":
                store.release(account, key)  # nothing was written: a retry may run it
            return response
    return _finish(store, account, key, response)


def _finish(store: IdempotencyStore, account: str, key: str, response: Response) -> Response:
    headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
    if response.status_code < 500:
        store.finish(account, key, response.status_code, headers, bytes(response.body))
    return response


__all__: list[Any] = ["idempotent"]
