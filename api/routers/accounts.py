"""/v1/accounts: the list of accounts, for auditors and admins, so that they can
find an account (its id for `account_id`) without knowing it beforehand."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import ContainerDep, PrincipalDep, a_role, scope_of
from api.openapi import problems
from api.problems import Problem, invalid
from api.schemas import AccountPage
from infrastructure.account_directory import AccountDirectory, AccountSummary

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def _encode(last: AccountSummary) -> str:
    return base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, account_id = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        )
        return datetime.fromisoformat(created), str(UUID(account_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            "cursor", "is not one this API returned", "cursor is not one this API returned"
        ) from None


@router.get(
    "",
    response_model=AccountPage,
    summary="List accounts (auditors and admins)",
    description=(
        "Every account in creation order, with its role and profile counts, a page at a time: pass"
        " `next_cursor` back as `cursor` until it is null. An account's `id` is the `account_id` that"
        " auditors pass to `GET /v1/profiles`, `GET /v1/profiles/default` and `GET /v1/audit/defaults`."
        " Owner tokens get 403."
    ),
    responses=problems(401, 403, 422, 503, s403="An owner token: it sees only its own account."),
)
def list_accounts(
    principal: PrincipalDep,
    container: ContainerDep,
    cursor: Annotated[
        str | None, Query(description="the `next_cursor` of the previous page (opaque)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="accounts per page")] = 50,
) -> JSONResponse:
    if scope_of(principal) is not None:
        raise Problem.of("forbidden", f"{a_role(principal.role)} token cannot list accounts")
    rows = AccountDirectory(container.datastore).page(_decode(cursor) if cursor else None, limit + 1)
    items = [
        {
            "id": r.id,
            "name": r.name,
            "role": r.role,
            "created_at": r.created_at.isoformat(),
            "profile_count": r.profile_count,
            "active_profile_count": r.active_profile_count,
        }
        for r in rows[:limit]
    ]
    return JSONResponse(
        {"items": items, "next_cursor": _encode(rows[limit - 1]) if len(rows) > limit else None}
    )
